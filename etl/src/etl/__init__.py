"""etl: copies the admin's catalog (films, plans, deletions) into billing, incrementally."""

"""What managers read about the business (iss=admin, read-only): the dashboard's figures, CSV
exports of payments and refunds, finding a customer, and a customer's timeline."""

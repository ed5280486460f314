"""Render deploy/nginx/cinema.conf.template into a complete nginx.conf for a local run.

    python scripts/nginx_conf.py OUTPUT --data-dir var

The template is the one docker-compose's nginx uses; like the nginx image's envsubst step, only
the NGINX_* variables of the environment are substituted (nginx's own `$host` and the like stay).
The rest of the file lets nginx run from the data folder as any user: its pid, logs and buffers
live under DATA_DIR.
"""

from __future__ import annotations

import argparse
import os
import pwd
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "cinema.conf.template"
REQUIRED = [
    f"NGINX_{service}_{part}"
    for service in ("ADMIN", "BILLING", "PAY_API")
    for part in ("LISTEN", "SERVERS")
]


def render(data_dir: Path, env: dict[str, str]) -> str:
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise SystemExit(f"nginx_conf: set {', '.join(missing)}")
    values = {name: value for name, value in env.items() if name.startswith("NGINX_")}
    site = Template(TEMPLATE.read_text()).safe_substitute(values)
    run, logs, temp = data_dir / "run", data_dir / "log", data_dir / "nginx"
    # Running as root, nginx would hand its workers to `nobody`, who cannot write our folders.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.getuid() == 0 else ""
    buffers = "\n".join(
        f"    {kind}_temp_path {temp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# Written by scripts/nginx_conf.py from {TEMPLATE.name}; do not edit.
{user}worker_processes {env.get("NGINX_WORKER_PROCESSES", "1")};
pid {run / "nginx.pid"};
error_log {logs / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{buffers}
{site}
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    for folder in ("run", "log", "nginx"):
        (data_dir / folder).mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(data_dir, dict(os.environ)))


if __name__ == "__main__":
    main()

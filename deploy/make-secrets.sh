#!/bin/sh
# Make the deployment's secrets once, in ./secrets (0600, never committed).
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
[ -e secrets/postgres_password ] && { echo "secrets/ exists already; remove it to make new ones" >&2; exit 1; }
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
random > secrets/postgres_password
printf 'postgres:5432:pacsdash:pacsdash:%s\n' "$(cat secrets/postgres_password)" > secrets/pgpass
echo "pacsdash-$(python3 -c 'import secrets; print(secrets.token_hex(6))')" > secrets/s3_access_key
random > secrets/s3_secret_key
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$(cat secrets/s3_access_key)" "$(cat secrets/s3_secret_key)" > secrets/aws_credentials
echo "made ./secrets: keep it out of version control and back it up with the volumes"

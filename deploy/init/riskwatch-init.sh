#!/bin/sh
# First start of the docker-compose stack (service riskwatch-init; docs/operations.md,
# "Passwords"): makes every machine password the stack needs, so that none is shipped. Runs as
# root before Mosquitto starts, at every `docker compose up`; what exists is kept, so passwords
# never change under running clients. Writes into $RISKWATCH_SECRETS (the riskwatch-secrets
# volume), each file readable only by the container user that needs it:
#
#   mqtt/credentials.toml          every MQTT account's password (root; hand gateways theirs)
#   mqtt/passwd, mqtt/acl          Mosquitto's password file and ACL (uid 1883, eclipse-mosquitto)
#   mqtt-riskwatch.password        the services' and simulator's MQTT password (uid 10001)
#   mqtt-riskwatch-console.password  the console's MQTT password (uid 10001)
#   grafana-admin.password         Grafana's admin password (uid 472, grafana/grafana)
#
# Tested by tests/first_start.rs (run against a temporary folder, then a real Mosquitto).
set -eu
secrets=${RISKWATCH_SECRETS:-/run/secrets/riskwatch}
registry=${RISKWATCH_REGISTRY:-/etc/riskwatch/demo/registry.toml}
# Owners; RISKWATCH_INIT_CHOWN=0 leaves files to the current user (tests).
chown_to() {
    if [ "${RISKWATCH_INIT_CHOWN:-1}" = 1 ]; then chown "$@"; fi
}
umask 077
mkdir -p "$secrets"
chmod 0755 "$secrets"

# MQTT accounts from the registry: riskwatch (the services), riskwatch-console, duty-app and one
# per [[gateways]] entry. Re-running keeps the passwords and adds accounts for new gateways.
riskwatch mqtt-acl --allow-no-gateways --registry "$registry" --out "$secrets/mqtt"
chmod 0755 "$secrets/mqtt"
chmod 0600 "$secrets/mqtt/passwd" "$secrets/mqtt/acl"
chown_to 1883:1883 "$secrets/mqtt/passwd" "$secrets/mqtt/acl"

# Each riskwatch container reads its account's password (RISKWATCH_MQTT_PASSWORD_FILE).
for account in riskwatch riskwatch-console; do
    password=$(sed -n "s/^\"$account\" = \"\\([A-Za-z0-9]*\\)\"\$/\\1/p" "$secrets/mqtt/credentials.toml")
    if [ -z "$password" ]; then
        echo "riskwatch-init: no password for $account in $secrets/mqtt/credentials.toml" >&2
        exit 1
    fi
    file="$secrets/mqtt-$account.password"
    printf '%s\n' "$password" > "$file.new"
    chmod 0400 "$file.new"
    chown_to 10001:10001 "$file.new"
    mv "$file.new" "$file"
done

# Grafana's admin password, made once (Grafana sets it when it creates its database; change it
# in Grafana afterwards, this file is not read again).
file="$secrets/grafana-admin.password"
if [ ! -s "$file" ]; then
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$file.new"
    echo >> "$file.new"
    mv "$file.new" "$file"
fi
chmod 0400 "$file"
chown_to 472:472 "$file"
echo "riskwatch-init: passwords in place in $secrets (docs/operations.md, \"Passwords\")"

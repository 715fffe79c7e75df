#!/bin/sh
# storekeeper WooCommerce setup, run by the setup Job in the official wordpress:cli image as uid 33
# against the WordPress volume. Idempotent: every step checks before it changes anything, so the
# Job can run again on every upgrade. Inputs come from the environment (see templates/setup.yaml);
# credentials come from the store's Secret, never from this file.
set -eu

: "${STORE_URL:?}" "${STORE_TITLE:?}" "${STORE_ADMIN_USER:?}" "${STORE_ADMIN_EMAIL:?}"
: "${STORE_ADMIN_PASSWORD:?}" "${STORE_CURRENCY:?}" "${STORE_COUNTRY:?}"
: "${SETUP_VERSION:?}" "${SETUP_HASH:?}" "${WOOCOMMERCE_VERSION:?}" "${STOREFRONT_VERSION:?}"
STORE_STATE="${STORE_STATE:-}"
STORE_ADDRESS="${STORE_ADDRESS:-}"
STORE_CITY="${STORE_CITY:-}"
STORE_POSTCODE="${STORE_POSTCODE:-}"
STORE_TAXES="${STORE_TAXES:-}"
STORE_COD="${STORE_COD:-true}"
STORE_SAMPLE_PRODUCTS="${STORE_SAMPLE_PRODUCTS:-false}"
SHIPPING_TITLE="${SHIPPING_TITLE:-Flat rate}"
SHIPPING_COST="${SHIPPING_COST:-5}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
WP_PATH="${WP_PATH:-/var/www/html}"
WORDPRESS_VERSION="${WORDPRESS_VERSION:-}"

log() { printf '%s storekeeper-setup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

wp_() { wp --path="$WP_PATH" --no-color "$@"; }
# version_lt A B: true when version A is older than B (PHP's version_compare, as WordPress uses).
version_lt() {
  # shellcheck disable=SC2016 # PHP code, expanded by PHP, not by the shell
  php -r 'exit(version_compare($argv[1], $argv[2], "<") ? 0 : 1);' "$1" "$2"
}
wc_() { wp_ wc "$@" --user="$STORE_ADMIN_USER"; }

wait_for() {
  what="$1"
  shift
  waited=0
  until "$@" >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
      log "gave up waiting for $what after ${WAIT_SECONDS}s"
      exit 1
    fi
    sleep 5
    waited=$((waited + 5))
  done
  log "$what is ready"
}

db_reachable() {
  # Plain PHP connection check: does not depend on the mysql client's TLS defaults.
  # shellcheck disable=SC2016 # PHP code, expanded by PHP, not by the shell
  php -r '$h = getenv("WORDPRESS_DB_HOST"); $m = @mysqli_connect($h, getenv("WORDPRESS_DB_USER"), getenv("WORDPRESS_DB_PASSWORD"), getenv("WORDPRESS_DB_NAME")); exit($m ? 0 : 1);'
}

# 1. WordPress files (copied by the WordPress container on first start) and the database.
wait_for "wp-config.php" test -s "$WP_PATH/wp-config.php"
wait_for "wp-includes/version.php" test -s "$WP_PATH/wp-includes/version.php"
wait_for "database" db_reachable

# 2. Core install.
if wp_ core is-installed; then
  log "WordPress already installed"
else
  log "installing WordPress at $STORE_URL"
  wp_ core install --url="$STORE_URL" --title="$STORE_TITLE" \
    --admin_user="$STORE_ADMIN_USER" --admin_password="$STORE_ADMIN_PASSWORD" \
    --admin_email="$STORE_ADMIN_EMAIL" --skip-email
fi
wp_ option update blogname "$STORE_TITLE" >/dev/null

# 2b. Core at the pinned version: the image copies its WordPress only into an empty volume, so
# security releases reach an existing store only this way. Then the database schema.
if [ -n "$WORDPRESS_VERSION" ]; then
  core="$(wp_ core version)"
  if version_lt "$core" "$WORDPRESS_VERSION"; then
    log "updating WordPress core $core -> $WORDPRESS_VERSION"
    wp_ core update --version="$WORDPRESS_VERSION"
  elif version_lt "$WORDPRESS_VERSION" "$core"; then
    log "WordPress core $core is newer than the pin $WORDPRESS_VERSION: left as is (no downgrades)"
  fi
fi
wp_ core update-db

# 3. Pretty permalinks (the image ships the matching .htaccess).
if [ "$(wp_ option get permalink_structure)" != "/%postname%/" ]; then
  wp_ rewrite structure '/%postname%/'
fi

# 4. WooCommerce and Storefront at pinned versions.
ensure_extension() {
  kind="$1" slug="$2" version="$3"
  current="$(wp_ "$kind" get "$slug" --field=version 2>/dev/null || true)"
  if [ "$current" != "$version" ]; then
    log "installing $kind $slug $version (found: ${current:-none})"
    wp_ "$kind" install "$slug" --version="$version" --force
  fi
  if [ "$kind" = plugin ]; then
    wp_ plugin is-active "$slug" || wp_ plugin activate "$slug"
  else
    wp_ theme is-active "$slug" || wp_ theme activate "$slug"
  fi
}
ensure_extension plugin woocommerce "$WOOCOMMERCE_VERSION"
ensure_extension theme storefront "$STOREFRONT_VERSION"
# WooCommerce's database updates after an upgrade (a no-op when there are none). Left to itself it
# queues them in Action Scheduler, which runs only from cron.
wp_ wc update

# 5. Store options.
default_country="$STORE_COUNTRY"
if [ -n "$STORE_STATE" ]; then
  default_country="$STORE_COUNTRY:$STORE_STATE"
fi
set_option() {
  if [ "$(wp_ option get "$1" 2>/dev/null || true)" != "$2" ]; then
    wp_ option update "$1" "$2" >/dev/null
    log "option $1 set"
  fi
}
set_option woocommerce_store_address "$STORE_ADDRESS"
set_option woocommerce_store_city "$STORE_CITY"
set_option woocommerce_store_postcode "$STORE_POSTCODE"
set_option woocommerce_default_country "$default_country"
set_option woocommerce_currency "$STORE_CURRENCY"
if [ -n "$STORE_TAXES" ]; then
  set_option woocommerce_calc_taxes yes
else
  set_option woocommerce_calc_taxes no
fi
# New shops start in coming-soon mode since WooCommerce 9.3.
set_option woocommerce_coming_soon no
set_option woocommerce_store_pages_only no
wp_ option update woocommerce_onboarding_profile '{"skipped":true}' --format=json >/dev/null
# The task lists to hide (woocommerce_task_list_hidden is deprecated and only mapped onto this).
wp_ option update woocommerce_task_list_hidden_lists '["setup","extended"]' --format=json >/dev/null

# 6. Shop, Cart, Checkout and My account pages (creates only missing ones).
wc_ tool run install_pages >/dev/null

# 7. Cash on delivery.
wc_ payment_gateway update cod --enabled="$STORE_COD" >/dev/null
log "cash on delivery enabled=$STORE_COD"

# 8. A flat-rate shipping method in zone 0 ("Locations not covered by your other zones").
if wc_ shipping_zone_method list 0 --fields=method_id --format=csv | grep -qx flat_rate; then
  log "flat-rate shipping already present"
else
  settings="$(php -r 'echo json_encode(["title" => getenv("SHIPPING_TITLE"), "cost" => getenv("SHIPPING_COST")]);')"
  wc_ shipping_zone_method create 0 --method_id=flat_rate --enabled=true --settings="$settings" >/dev/null
  log "flat-rate shipping created"
fi

# 9. Tax rates for the store's country, one line "name|rate" each.
if [ -n "$STORE_TAXES" ]; then
  existing="$(wc_ tax list --per_page=100 --fields=country,name --format=csv)"
  printf '%s\n' "$STORE_TAXES" | while IFS='|' read -r name rate; do
    [ -n "$name" ] || continue
    if printf '%s\n' "$existing" | grep -qxF "$STORE_COUNTRY,$name"; then
      log "tax rate $name already present"
    else
      wc_ tax create --country="$STORE_COUNTRY" --rate="$rate" --name="$name" --shipping=true </dev/null >/dev/null
      log "tax rate $name ($rate%) created"
    fi
  done
fi

# 10. Sample products, guarded by SKU (a duplicate SKU is an error).
if [ "$STORE_SAMPLE_PRODUCTS" = "true" ]; then
  while IFS='|' read -r sku name price; do
    [ -n "$sku" ] || continue
    # stdin is the product list below: keep wp-cli from reading it.
    if [ "$(wc_ product list --sku="$sku" --format=count </dev/null)" -gt 0 ]; then
      log "sample product $sku already present"
    else
      wc_ product create --name="$name" --type=simple --regular_price="$price" \
        --sku="$sku" --status=publish </dev/null >/dev/null
      log "sample product $sku created"
    fi
  done <<'PRODUCTS'
storekeeper-sample-mug|Sample Mug|12.00
storekeeper-sample-tshirt|Sample T-Shirt|20.00
storekeeper-sample-poster|Sample Poster|8.50
PRODUCTS
fi

# 11. Versioned completion marker for storekeeper.
wp_ option update storekeeper_setup_hash "$SETUP_HASH" >/dev/null
wp_ option update storekeeper_setup_version "$SETUP_VERSION" >/dev/null
log "setup complete (version $SETUP_VERSION, inputs $SETUP_HASH)"

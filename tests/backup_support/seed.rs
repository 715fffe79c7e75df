//! Store-shaped databases: WooCommerce's tables (wp_options, wp_posts, wp_postmeta, the HPOS order
//! tables, order items) and Medusa's (product, image, order, line items...), filled with orders
//! whose values exercise the dump formats: UTF-8 beyond the BMP, quotes, backslashes, tabs and
//! newlines, NULLs, decimals, serialized PHP and JSON holding the store URL, binary data.

use super::Noise;

/// The awkward text every table gets some of.
const AWKWARD: [&str; 5] = [
    "plain",
    "quote ' double \" backslash \\ end",
    "tab\there\nnew line",
    "₹ 1.299,00 — «ünïcødé» 🎉🛒",
    "",
];

fn mysql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn pg_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A PHP-serialized array of the attachment metadata WordPress stores (lengths must stay right).
fn php_serialized(url: &str, file: &str) -> String {
    let full = format!("{url}/wp-content/uploads/{file}");
    format!(
        "a:3:{{s:4:\"file\";s:{}:\"{file}\";s:3:\"url\";s:{}:\"{full}\";s:5:\"sizes\";a:0:{{}}}}",
        file.len(),
        full.len()
    )
}

const WOO_SCHEMA: &str = "
CREATE TABLE wp_options (option_id bigint unsigned NOT NULL AUTO_INCREMENT, option_name varchar(191) NOT NULL DEFAULT '',
  option_value longtext NOT NULL, autoload varchar(20) NOT NULL DEFAULT 'yes', PRIMARY KEY (option_id),
  UNIQUE KEY option_name (option_name)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_posts (ID bigint unsigned NOT NULL AUTO_INCREMENT, post_author bigint unsigned NOT NULL DEFAULT 0,
  post_date datetime NOT NULL, post_content longtext NOT NULL, post_title text NOT NULL, post_status varchar(20) NOT NULL,
  post_name varchar(200) NOT NULL, post_type varchar(20) NOT NULL, guid varchar(255) NOT NULL, post_mime_type varchar(100) NOT NULL DEFAULT '',
  PRIMARY KEY (ID), KEY type_status_date (post_type, post_status, post_date, ID)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_postmeta (meta_id bigint unsigned NOT NULL AUTO_INCREMENT, post_id bigint unsigned NOT NULL,
  meta_key varchar(255) DEFAULT NULL, meta_value longtext, PRIMARY KEY (meta_id), KEY post_id (post_id))
  ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_wc_orders (id bigint unsigned NOT NULL, status varchar(20) DEFAULT NULL, currency varchar(10) DEFAULT NULL,
  type varchar(20) DEFAULT NULL, tax_amount decimal(26,8) DEFAULT NULL, total_amount decimal(26,8) DEFAULT NULL,
  customer_id bigint unsigned DEFAULT NULL, billing_email varchar(320) DEFAULT NULL, date_created_gmt datetime DEFAULT NULL,
  payment_method varchar(100) DEFAULT NULL, customer_note text, PRIMARY KEY (id), KEY status (status))
  ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_wc_order_addresses (id bigint unsigned NOT NULL AUTO_INCREMENT, order_id bigint unsigned NOT NULL,
  address_type varchar(20) DEFAULT NULL, first_name text, last_name text, address_1 text, city text, state text,
  postcode text, country text, email varchar(320) DEFAULT NULL, phone varchar(100) DEFAULT NULL, PRIMARY KEY (id),
  UNIQUE KEY address_type_order_id (address_type, order_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_wc_orders_meta (id bigint unsigned NOT NULL AUTO_INCREMENT, order_id bigint unsigned DEFAULT NULL,
  meta_key varchar(255) DEFAULT NULL, meta_value text, PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_woocommerce_order_items (order_item_id bigint unsigned NOT NULL AUTO_INCREMENT, order_item_name text NOT NULL,
  order_item_type varchar(200) NOT NULL DEFAULT '', order_id bigint unsigned NOT NULL, PRIMARY KEY (order_item_id),
  KEY order_id (order_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_woocommerce_order_itemmeta (meta_id bigint unsigned NOT NULL AUTO_INCREMENT, order_item_id bigint unsigned NOT NULL,
  meta_key varchar(255) DEFAULT NULL, meta_value longtext, PRIMARY KEY (meta_id), KEY order_item_id (order_item_id))
  ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_wc_download_blobs (id int NOT NULL AUTO_INCREMENT, data longblob, PRIMARY KEY (id)) ENGINE=InnoDB;
";

/// SQL that creates and fills a WooCommerce-shaped database for the store at `url`.
pub fn woocommerce(url: &str, orders: usize, noise: &mut Noise) -> String {
    let mut sql = String::from(WOO_SCHEMA);
    let opt = |name: &str, value: &str| {
        format!(
            "INSERT INTO wp_options (option_name, option_value) VALUES ({}, {});\n",
            mysql_str(name),
            mysql_str(value)
        )
    };
    sql += &opt("siteurl", url);
    sql += &opt("home", url);
    sql += &opt("woocommerce_currency", "INR");
    sql += &opt(
        "widget_text",
        &format!(
            "a:1:{{i:2;a:1:{{s:4:\"text\";s:{}:\"{url}/shop\";}}}}",
            url.len() + 5
        ),
    );
    for (i, text) in AWKWARD.iter().enumerate() {
        sql += &opt(&format!("awkward_{i}"), text);
    }
    for p in 1..=20 {
        let file = format!("2026/01/image-{p}.jpg");
        sql += &format!(
            "INSERT INTO wp_posts (ID, post_date, post_content, post_title, post_status, post_name, post_type, guid) \
             VALUES ({p}, '2026-01-{:02} 10:00:00', {}, 'Product {p} 🎁', 'publish', 'product-{p}', 'product', '{url}/?p={p}');\n",
            1 + p % 28,
            mysql_str(&format!(
                "<p>See <a href=\"{url}/product-{p}/\">it</a>. {}</p>",
                AWKWARD[p % 5]
            ))
        );
        sql += &format!(
            "INSERT INTO wp_posts (ID, post_date, post_content, post_title, post_status, post_name, post_type, guid, post_mime_type) \
             VALUES ({}, '2026-01-02 09:00:00', '', 'image-{p}', 'inherit', 'image-{p}', 'attachment', '{url}/wp-content/uploads/{file}', 'image/jpeg');\n",
            100 + p
        );
        for (key, value) in [
            ("_sku".to_string(), format!("SKU-{p:04}")),
            ("_price".to_string(), format!("{}.{:02}", 10 + p, p * 7 % 100)),
            ("_thumbnail_id".to_string(), (100 + p).to_string()),
        ] {
            sql += &format!(
                "INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES ({p}, '{key}', '{value}');\n"
            );
        }
        sql += &format!(
            "INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES ({}, '_wp_attachment_metadata', {});\n",
            100 + p,
            mysql_str(&php_serialized(url, &file))
        );
    }
    for o in 1..=orders {
        sql += &woo_order(o, noise);
    }
    sql += &format!(
        "INSERT INTO wp_wc_download_blobs (data) VALUES (X'{}');\n",
        hex(&noise.bytes(4096))
    );
    sql
}

fn woo_order(o: usize, noise: &mut Noise) -> String {
    let total = noise.next() % 100_000;
    let note = if o.is_multiple_of(7) {
        "NULL".to_string()
    } else {
        mysql_str(AWKWARD[o % 5])
    };
    let mut sql = format!(
        "INSERT INTO wp_wc_orders VALUES ({id}, 'wc-processing', 'INR', 'shop_order', {tax}.18000000, {total}.50000000, {c}, \
         'buyer{o}@example.test', '2026-02-{d:02} 12:{m:02}:00', 'cod', {note});\n",
        id = 1000 + o,
        tax = total / 10,
        c = o % 17,
        d = 1 + o % 28,
        m = o % 60,
    );
    for kind in ["billing", "shipping"] {
        sql += &format!(
            "INSERT INTO wp_wc_order_addresses (order_id, address_type, first_name, last_name, address_1, city, state, postcode, country, email, phone) \
             VALUES ({}, '{kind}', 'Ana {o}', {}, '{o} MG Road', 'Bengaluru', 'KA', '5600{:02}', 'IN', 'buyer{o}@example.test', NULL);\n",
            1000 + o,
            mysql_str(AWKWARD[(o + 1) % 5]),
            o % 100
        );
    }
    sql += &format!(
        "INSERT INTO wp_wc_orders_meta (order_id, meta_key, meta_value) VALUES ({}, '_cart_hash', '{:x}');\n",
        1000 + o,
        noise.next()
    );
    for item in 0..(1 + o % 3) {
        sql += &format!(
            "INSERT INTO wp_woocommerce_order_items (order_item_name, order_item_type, order_id) VALUES ('Product {} 🎁', 'line_item', {});\n\
             INSERT INTO wp_woocommerce_order_itemmeta (order_item_id, meta_key, meta_value) VALUES (LAST_INSERT_ID(), '_qty', '{}');\n",
            1 + (o + item) % 20,
            1000 + o,
            1 + item
        );
    }
    sql
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const MEDUSA_SCHEMA: &str = r#"
CREATE TABLE product (id text PRIMARY KEY, title text NOT NULL, handle text NOT NULL UNIQUE, thumbnail text,
  metadata jsonb, created_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz);
CREATE TABLE image (id text PRIMARY KEY, url text NOT NULL, product_id text REFERENCES product(id), rank integer NOT NULL DEFAULT 0);
CREATE TABLE product_variant (id text PRIMARY KEY, product_id text NOT NULL REFERENCES product(id), sku text UNIQUE,
  title text NOT NULL, variant_rank integer DEFAULT 0);
CREATE TABLE price (id text PRIMARY KEY, variant_id text REFERENCES product_variant(id), currency_code text NOT NULL,
  amount numeric NOT NULL, raw_amount jsonb NOT NULL);
CREATE TABLE customer (id text PRIMARY KEY, email text NOT NULL, first_name text, last_name text, metadata jsonb);
CREATE TABLE "order" (id text PRIMARY KEY, display_id serial, status text NOT NULL, currency_code text NOT NULL,
  email text, customer_id text REFERENCES customer(id), metadata jsonb, created_at timestamptz NOT NULL);
CREATE TABLE order_line_item (id text PRIMARY KEY, order_id text NOT NULL REFERENCES "order"(id), title text NOT NULL,
  thumbnail text, variant_id text, quantity numeric NOT NULL, unit_price numeric NOT NULL, raw_unit_price jsonb NOT NULL);
CREATE TABLE order_address (id text PRIMARY KEY, order_id text REFERENCES "order"(id), address_1 text, city text,
  country_code text, postal_code text, phone text);
CREATE TABLE file_blob (id serial PRIMARY KEY, data bytea NOT NULL);
CREATE INDEX order_created_at ON "order" (created_at);
CREATE VIEW paid_orders AS SELECT id, display_id FROM "order" WHERE status = 'completed';
CREATE TABLE storekeeper_setup (key text PRIMARY KEY, value text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO storekeeper_setup (key, value) VALUES ('migrated', 'abc123'), ('seeded', '2026-01-01T00:00:00Z');
"#;

/// SQL that creates and fills a Medusa-shaped database whose file URLs point at `url`.
pub fn medusa(url: &str, orders: usize, noise: &mut Noise) -> String {
    let mut sql = String::from(MEDUSA_SCHEMA);
    for p in 1..=20 {
        let img = format!("{url}/static/1767000000{p:03}-product-{p}.jpg");
        sql += &format!(
            "INSERT INTO product VALUES ('prod_{p:02}', {}, 'product-{p}', '{img}', '{{\"source\": \"{url}/static\", \"n\": {p}}}', '2026-01-01 10:00:00+00', NULL);\n\
             INSERT INTO image VALUES ('img_{p:02}', '{img}', 'prod_{p:02}', 0);\n\
             INSERT INTO product_variant VALUES ('variant_{p:02}', 'prod_{p:02}', 'SKU-{p:04}', 'Default', 0);\n\
             INSERT INTO price VALUES ('price_{p:02}', 'variant_{p:02}', 'inr', {p}99.5, '{{\"value\": \"{p}99.5\", \"precision\": 20}}');\n",
            pg_str(&format!("Product {p} {}", AWKWARD[p % 5]))
        );
    }
    for c in 0..17 {
        sql += &format!(
            "INSERT INTO customer VALUES ('cus_{c:02}', 'buyer{c}@example.test', {}, NULL, '{{\"tier\": {c}}}');\n",
            pg_str(AWKWARD[c % 5])
        );
    }
    for o in 1..=orders {
        let meta = if o.is_multiple_of(5) {
            "NULL".to_string()
        } else {
            format!("'{{\"note\": \"order {o}\"}}'")
        };
        sql += &format!(
            "INSERT INTO \"order\" (id, status, currency_code, email, customer_id, metadata, created_at) \
             VALUES ('order_{o:04}', 'pending', 'inr', 'buyer{}@example.test', 'cus_{:02}', {meta}, '2026-02-{:02} 12:00:00+00');\n\
             INSERT INTO order_address VALUES ('addr_{o:04}', 'order_{o:04}', {}, 'Bengaluru', 'in', '560001', NULL);\n",
            o % 17,
            o % 17,
            1 + o % 28,
            pg_str(AWKWARD[(o + 2) % 5])
        );
        for item in 0..(1 + o % 3) {
            let p = 1 + (o + item) % 20;
            sql += &format!(
                "INSERT INTO order_line_item VALUES ('item_{o:04}_{item}', 'order_{o:04}', 'Product {p}', \
                 '{url}/static/1767000000{p:03}-product-{p}.jpg', 'variant_{p:02}', {}, {}.25, '{{\"value\": \"{}.25\"}}');\n",
                1 + item,
                noise.next() % 1000,
                p
            );
        }
    }
    sql += &format!(
        "INSERT INTO file_blob (data) VALUES ('\\x{}');\n",
        hex(&noise.bytes(4096))
    );
    sql
}

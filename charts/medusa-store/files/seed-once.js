// storekeeper: runs the store's seed once, under `medusa exec`, and records the marker `seeded`
// right after the seed returns, through the same process's database connection (the knex instance
// Medusa registers as ContainerRegistrationKeys.PG_CONNECTION), so no retried pod seeds twice.
//   medusa exec /scripts/seed-once.js <seed script> [args...]
// The marker table storekeeper_setup was created by db.sh before this runs.
"use strict";

const path = require("path");
const { pathToFileURL } = require("url");

async function load(file) {
  let mod;
  try {
    mod = require(file);
  } catch (err) {
    if (err.code !== "ERR_REQUIRE_ESM") {
      throw err;
    }
    mod = await import(pathToFileURL(file).href);
  }
  // `medusa build` compiles `export default` to exports.default; an ESM namespace nests it once more.
  for (const candidate of [mod, mod && mod.default, mod && mod.default && mod.default.default]) {
    if (typeof candidate === "function") {
      return candidate;
    }
  }
  throw new Error(`${file} does not export a seed function`);
}

async function seedOnce({ container, args }) {
  const [script, ...rest] = args || [];
  if (!script) {
    throw new Error("usage: medusa exec seed-once.js <seed script> [args...]");
  }
  const seed = await load(path.resolve(process.cwd(), script));
  await seed({ container, args: rest });
  const pg = container.resolve("__pg_connection__");
  await pg.raw(
    "INSERT INTO storekeeper_setup (key, value) VALUES ('seeded', ?) " +
      "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
    [new Date().toISOString()]
  );
}

// Shaped like a compiled seed: callable as the module itself and as its `default` export.
seedOnce.default = seedOnce;
Object.defineProperty(seedOnce, "__esModule", { value: true });
module.exports = seedOnce;

// medusa-config.ts for charts/medusa-store: every setting comes from the environment the chart
// sets. Drop it into your project (apps/backend/ in the dtc-starter) or merge it into yours.
import { loadEnv, defineConfig } from "@medusajs/framework/utils"

loadEnv(process.env.NODE_ENV || "development", process.cwd())
const redisUrl = process.env.REDIS_URL

// The Caching Module (Medusa 2.11+; the Cache Module `cache-redis` is deprecated since 2.11) with
// its Redis provider, when the provider is installed (`pnpm add @medusajs/caching-redis`).
const redisCaching = (() => {
  try {
    require.resolve("@medusajs/caching-redis")
    return true
  } catch {
    return false
  }
})()

module.exports = defineConfig({
  projectConfig: {
    databaseUrl: process.env.DATABASE_URL,
    redisUrl,
    workerMode: process.env.MEDUSA_WORKER_MODE as "shared" | "worker" | "server",
    http: {
      storeCors: process.env.STORE_CORS!,
      adminCors: process.env.ADMIN_CORS!,
      authCors: process.env.AUTH_CORS!,
      jwtSecret: process.env.JWT_SECRET, // the chart always sets it (Medusa's default is "supersecret")
      cookieSecret: process.env.COOKIE_SECRET,
    },
  },
  admin: {
    disable: process.env.DISABLE_MEDUSA_ADMIN === "true", // "true" in the worker
  },
  // The Caching Module is behind this feature flag.
  featureFlags: {
    caching: redisCaching,
  },
  modules: [
    ...(redisCaching
      ? [
          {
            resolve: "@medusajs/medusa/caching",
            options: {
              providers: [
                { resolve: "@medusajs/caching-redis", id: "caching-redis", is_default: true, options: { redisUrl } },
              ],
            },
          },
        ]
      : []),
    { resolve: "@medusajs/medusa/event-bus-redis", options: { redisUrl } },
    { resolve: "@medusajs/medusa/workflow-engine-redis", options: { redis: { url: redisUrl } } },
    {
      resolve: "@medusajs/medusa/locking",
      options: {
        providers: [
          { resolve: "@medusajs/medusa/locking-redis", id: "locking-redis", is_default: true, options: { redisUrl } },
        ],
      },
    },
  ],
})

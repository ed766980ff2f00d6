# syntax=docker/dockerfile:1
# Production image of the storage commitment sidecar: compiled JavaScript, production dependencies only,
# running as the unprivileged `node` user.

# 1. Production dependencies (better-sqlite3 builds its native addon here).
FROM node:20-bookworm-slim AS deps
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev

# 2. Compile TypeScript with the dev dependencies.
FROM deps AS build
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# 3. Runtime: no compilers, no dev dependencies, no sources.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    STGCMT_DATA_DIR=/var/lib/stgcmt
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY public ./public
COPY docs/openapi.yaml ./docs/openapi.yaml
COPY package.json ./
RUN mkdir -p /var/lib/stgcmt && chown node:node /var/lib/stgcmt
USER node
VOLUME ["/var/lib/stgcmt"]
EXPOSE 11112 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.STGCMT_HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]

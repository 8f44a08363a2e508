// A local Bluesky network for Starling's tests, built from @atproto/dev-env.
//
//   node devnet.mjs [full|pds|auto]
//
// `pds` starts PLC + PDS (TestNetworkNoAppView: no database needed).
// `full` adds the AppView (TestNetwork): it needs PostgreSQL (DB_POSTGRES_URL,
// default postgres://postgres@127.0.0.1:5432/postgres) and Redis (REDIS_HOST,
// default 127.0.0.1:6379). `auto` (the default) tries `full` and falls back to `pds`.
//
// Once up it prints ONE JSON line {"ready": true, ...} with the service URLs and the
// test accounts, then one line {"firehose": {...}} per app.bsky.feed.post commit the
// PDS emits, in Jetstream's event shape (without time_us, which a Jetstream host
// assigns). It stays up until stdin closes or it gets SIGTERM/SIGINT.

import { randomBytes } from 'node:crypto'

import { TestNetwork, TestNetworkNoAppView } from '@atproto/dev-env'
import { IdResolver } from '@atproto/identity'
import { lexToJson } from '@atproto/lexicon'
import { Firehose } from '@atproto/sync'

const ACCOUNTS = [
  { short: 'alice', displayName: 'Alice Ångström' },
  { short: 'bob', displayName: 'Bob' },
  { short: 'carol', displayName: 'Carol' },
]
const POST_COLLECTION = 'app.bsky.feed.post'

const log = (...args) => console.error('[devnet]', ...args)
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

async function startFull(schema) {
  process.env.DB_POSTGRES_URL ??= 'postgres://postgres@127.0.0.1:5432/postgres'
  process.env.REDIS_HOST ??= '127.0.0.1:6379'
  return TestNetwork.create({ dbPostgresSchema: schema })
}

async function startPdsOnly() {
  return TestNetworkNoAppView.create({})
}

async function dropSchemas(schema) {
  // The AppView and Ozone each migrate into their own schema; leave nothing behind.
  try {
    const { default: pg } = await import('pg')
    const client = new pg.Client({ connectionString: process.env.DB_POSTGRES_URL })
    await client.connect()
    for (const name of [`appview_${schema}`, `ozone_${schema}`]) {
      await client.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`)
    }
    await client.end()
  } catch (err) {
    log('could not drop schemas:', err.message)
  }
}

async function main() {
  const mode = process.argv[2] ?? 'auto'
  // Postgres schema names here may hold only letters and underscores.
  const schema = `starling_${[...randomBytes(8)].map((b) => String.fromCharCode(97 + (b % 26))).join('')}`
  let network
  let full = false
  if (mode === 'full' || mode === 'auto') {
    try {
      network = await startFull(schema)
      full = true
    } catch (err) {
      if (mode === 'full') throw err
      log('full network failed, falling back to PDS only:', err.message)
      await dropSchemas(schema)
    }
  }
  network ??= await startPdsOnly()

  const seed = network.getSeedClient()
  const accounts = []
  for (const { short, displayName } of ACCOUNTS) {
    const handle = `${short}.test`
    const password = `${short}-pass-${randomBytes(4).toString('hex')}`
    const { did } = await seed.createAccount(short, {
      handle,
      email: `${short}@starling.test`,
      password,
    })
    await seed.createProfile(did, displayName, `${displayName} (a test account)`)
    accounts.push({ handle, did, password, displayName })
  }
  await network.processAll()

  const idResolver = new IdResolver({ plcUrl: network.plc.url })
  const firehose = new Firehose({
    idResolver,
    service: network.pds.url.replace(/^http/, 'ws'),
    filterCollections: [POST_COLLECTION],
    excludeIdentity: true,
    excludeAccount: true,
    excludeSync: true,
    unauthenticatedCommits: true,
    handleEvent: (evt) => {
      if (evt.collection !== POST_COLLECTION) return
      const commit = {
        rev: evt.rev,
        operation: evt.event,
        collection: evt.collection,
        rkey: evt.rkey,
      }
      if (evt.event !== 'delete') {
        commit.record = lexToJson(evt.record)
        commit.cid = evt.cid.toString()
      }
      emit({ firehose: { did: evt.did, kind: 'commit', commit } })
    },
    onError: (err) => log('firehose error:', err.message),
  })
  firehose.start()

  emit({
    ready: true,
    mode: full ? 'full' : 'pds',
    pds: network.pds.url,
    plc: network.plc.url,
    appview: full ? network.bsky.url : null,
    accounts,
  })

  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    const timer = setTimeout(() => process.exit(0), 5000)
    try {
      await firehose.destroy()
      await network.close()
      if (full) await dropSchemas(schema)
    } catch (err) {
      log('close failed:', err.message)
    }
    clearTimeout(timer)
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.stdin.on('end', stop)
  process.stdin.on('close', stop)
  process.stdin.resume()
}

main().catch((err) => {
  log('failed:', err.stack ?? err)
  process.exit(1)
})

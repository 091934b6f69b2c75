//! The pieces of an authenticated, org-scoped request, each on its own, on a real
//! SQLite file seeded with the demo tenant and 1,000 synthetic orgs of 20 members:
//! access-token verification, API key verification, authentication (token +
//! cached session), tenant
//! context (membership cache hit and miss), the members page query on a bound
//! connection, and an audit write (hash chain, one immediate transaction).
//! Run: `cargo bench -p plinth-core`. Flag evaluation: `cargo bench -p plinth-flags`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use plinth_core::audit::{AuditEntry, record};
use plinth_core::http::ClientInfo;
use plinth_core::identity::sessions;
use plinth_core::seed::SeedOptions;
use plinth_core::tenancy::api_keys::NewKey;
use plinth_core::tenancy::{Permissions, bound};
use plinth_core::{App, Config};
use uuid::Uuid;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let config = Config::from_vars([("DATABASE_URL", db.as_str()), ("PLINTH_LOG", "off")]).expect("config");
    let app = App::new(config.clone(), Vec::new()).expect("app");
    app.migrate().expect("migrate");
    app.seed(&SeedOptions {
        demo: true,
        orgs: 1_000,
        members: 20,
    })
    .expect("seed");
    let platform = app.platform().clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let (user, org): (Uuid, Uuid) = platform
        .db()
        .blocking(|sql| {
            sql.query_one(
                "SELECT u.id, o.id FROM users u, organizations o WHERE u.email = 'member@acme.test' AND o.slug = 'acme'",
                plinth_core::params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .expect("demo member");
    let client = ClientInfo {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        user_agent: None,
    };
    let (session, _) = platform
        .db()
        .blocking(|sql| sessions::create(sql, &config, user, &client))
        .expect("session");
    let (token, _) = platform
        .identity()
        .jwt()
        .issue(user, session, None, None)
        .expect("token");

    c.bench_function("jwt_verify", |b| {
        b.iter(|| {
            black_box(
                platform
                    .identity()
                    .jwt()
                    .verify(black_box(&token))
                    .expect("valid"),
            )
        })
    });

    let identity = platform.identity();
    rt.block_on(identity.authenticate(platform.db(), &token))
        .expect("warm");
    c.bench_function("authenticate_warm", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(identity.authenticate(platform.db(), &token))
                    .expect("auth"),
            )
        })
    });

    let principal = rt
        .block_on(identity.authenticate(platform.db(), &token))
        .expect("auth");
    let tenancy = platform.tenancy();
    c.bench_function("tenant_context_hit", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(tenancy.resolve(&principal, org, None))
                    .expect("member"),
            )
        })
    });
    c.bench_function("tenant_context_miss", |b| {
        b.iter(|| {
            tenancy.forget_org(org);
            black_box(
                rt.block_on(tenancy.resolve(&principal, org, None))
                    .expect("member"),
            )
        })
    });

    // An org API key, verified as a request presents it: parse, cached lookup by
    // prefix, keyed hash of the secret compared in constant time, expiry. Next to
    // `jwt_verify` above: both are what a request pays to know its caller.
    let permissions = Permissions::new(["org:read"]);
    let (_, api_key) = rt
        .block_on(tenancy.bind(org).write({
            let keys = tenancy.api_keys().clone();
            move |tx| {
                keys.create(
                    tx,
                    org,
                    &NewKey {
                        name: "bench",
                        permissions: &permissions,
                        created_by: "bench",
                        expires: None,
                    },
                )
            }
        }))
        .expect("api key");
    rt.block_on(tenancy.verify_key(&api_key)).expect("warm");
    c.bench_function("api_key_verify", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(tenancy.verify_key(black_box(&api_key)))
                    .expect("valid"),
            )
        })
    });

    let bound_db = tenancy.bind(org);
    c.bench_function("members_page_query", |b| {
        b.iter(|| {
            black_box(
                bound_db
                    .blocking(|sql| bound::members(sql, 21, None))
                    .expect("members"),
            )
        })
    });

    let entry = move || {
        AuditEntry::new("bench.event")
            .actor(user)
            .org(org)
            .target("org", org)
    };
    c.bench_function("audit_write", |b| {
        b.iter(|| {
            platform
                .db()
                .write_blocking(|tx| record(tx, &entry()))
                .expect("audit")
        })
    });
    // 64 writers at once, as under load: each its own transaction, one after the
    // other, against the same 64 through the group-committed async path.
    c.bench_function("audit_write_64_one_by_one", |b| {
        b.iter(|| {
            for _ in 0..64 {
                platform
                    .db()
                    .write_blocking(|tx| record(tx, &entry()))
                    .expect("audit");
            }
        })
    });
    c.bench_function("audit_write_64_concurrent_grouped", |b| {
        b.iter(|| {
            rt.block_on(async {
                futures_util::future::try_join_all((0..64).map(|_| {
                    let db = platform.db().clone();
                    tokio::spawn(async move { db.write(move |tx| record(tx, &entry())).await })
                }))
                .await
            })
            .expect("join")
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .expect("audit")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);

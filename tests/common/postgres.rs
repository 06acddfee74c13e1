//! A PostgreSQL database of the test's own, created with a unique name and dropped afterwards, on the
//! server the machine runs (`TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).

use sqlx::{Connection, PgConnection};

pub struct TestDatabase {
    pub url: String,
    name: String,
    admin: String,
}

fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin = admin_url();
        let name = format!("ogw_test_{}", uuid::Uuid::new_v4().simple());
        let mut connection = PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL is reachable (set TEST_POSTGRES_URL)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .unwrap();
        let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
            admin,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside any async context it could borrow; a thread with its own runtime will do.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut connection = PgConnection::connect(&admin).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut connection)
                    .await
                    .map(drop)
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

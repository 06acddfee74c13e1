//! Group commit for `apply`: the news waiting at one moment is applied in one transaction.
//!
//! Every append takes the event log's counter row (that is what makes sequence order commit order across
//! replicas), and the lock is held until the commit's WAL flush. One transaction per piece of news would
//! cap the whole cluster at one flush and one lock hand-over between database sessions per change: under
//! a burst of notifications the appends queue on the lock and their latency grows with the queue. Here a
//! replica applies whatever news is waiting in one round, however many items it holds: one statement
//! reads the rows, the status machine runs in memory, and one more statement — a transaction of its own —
//! locks the rows it writes in id order (so two replicas' rounds cannot deadlock), checks that none has
//! moved since the read, writes every changed row (each once, with its pointer to its newest version)
//! and appends every new version. Should a row have moved, the round runs again under locks taken first
//! (`BEGIN`, a locking read, the write, `COMMIT`). Rounds run one at a time per replica; news arriving
//! during a round waits for the next one, so a lone change is applied at once and a burst is carried by
//! a few rounds. The applier keeps a connection of its own, outside the pool, opened at start and
//! planning each statement once (`open`): news never queues for a connection behind a crowd of reads and
//! inbox writes, nor for a session being set up.

use std::{collections::HashMap, time::Duration};

use sqlx::{Connection, PgConnection, Row, postgres::PgConnectOptions};
use tokio::sync::{mpsc, oneshot};

use super::{
    CHANNEL,
    applications::{BY_IDS, BY_IDS_FOR_UPDATE, next_poll},
};
use crate::{
    domain::{Application, ApplicationId, Observation, poll::PollSchedule},
    store::{Applied, Event, Source, StoreError, micros, rows::event},
};

/// News waiting to be applied, and where its outcome goes.
pub(super) struct Pending {
    pub id: ApplicationId,
    pub seen: Observation,
    pub source: Source,
    pub schedule: PollSchedule,
    pub reply: oneshot::Sender<Result<Option<Applied>, StoreError>>,
}

/// Items per round at most: bounds one transaction's size and how long its row locks are held.
const ROUND: usize = 256;
/// News queued beyond this waits for room (back-pressure on the notification workers and callers).
const QUEUE: usize = 4096;

/// Starts the replica's applier; it stops when the returned sender (the store) is dropped.
/// `within` bounds each attempt to (re)connect, as it bounds the pool's.
pub(super) fn start(connect: PgConnectOptions, within: Duration) -> mpsc::Sender<Pending> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(run(connect, within, receiver));
    sender
}

async fn run(connect: PgConnectOptions, within: Duration, mut queue: mpsc::Receiver<Pending>) {
    let mut round = Vec::with_capacity(ROUND);
    // Connected before the first news arrives: setting a session up (a server process, TLS) takes longer
    // than a round, and the first notifications after a start would queue behind it. Should it fail here,
    // the first round connects (and reports a failure to its callers).
    let mut connection = open(&connect, within).await.ok();
    while queue.recv_many(&mut round, ROUND).await > 0 {
        let result = match connection.as_mut() {
            Some(connection) => apply_round(connection, &round).await,
            None => match open(&connect, within).await {
                Ok(fresh) => apply_round(connection.insert(fresh), &round).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(outcomes) => {
                for (pending, outcome) in round.drain(..).zip(outcomes) {
                    // A caller that gave up (its deadline passed) no longer listens; what it brought is
                    // applied all the same, as it would have been had it waited.
                    let _ = pending.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                // The connection may be what failed: the next round starts on a new one.
                connection = None;
                for pending in round.drain(..) {
                    let _ = pending.reply.send(Err(StoreError(e.0.clone())));
                }
            }
        }
    }
}

/// The applier's session, set to plan each statement once: every statement it runs looks rows up by id
/// whatever its parameters, and a plan made again at every run costs more than the run (BENCHMARKS.md
/// §16). Without sequential scans, as every session of the store (`super::SESSION`): a plan is made at a
/// statement's first run, perhaps on a new deployment's empty tables (§18).
const APPLIER_SESSION: &str = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off";

async fn open(connect: &PgConnectOptions, within: Duration) -> Result<PgConnection, StoreError> {
    let setting_up = async {
        let mut connection = PgConnection::connect_with(connect).await?;
        sqlx::raw_sql(APPLIER_SESSION)
            .execute(&mut connection)
            .await?;
        Ok::<_, StoreError>(connection)
    };
    tokio::time::timeout(within, setting_up)
        .await
        .map_err(|_| StoreError("could not connect in time".into()))?
}

/// Where an application's current version sits in the log.
#[derive(Debug, Clone, Copy)]
enum Seq {
    /// Committed earlier, at this sequence.
    Stored(u64),
    /// Appended by this round, as its n-th new version.
    Appended(usize),
}

/// One application as this round leaves it.
struct RoundRow {
    /// Its version and count of fruitless polls as read: a write is made only while they still hold.
    read_version: u64,
    read_unchanged_polls: u32,
    current: Application,
    seq: Seq,
    unchanged_polls: u32,
    /// The next poll, when the row must be written (it changed, or a poll found nothing new).
    write: Option<Option<i64>>,
}

/// Applies `round`; the outcomes are in the order of `round`.
///
/// First optimistically: the rows are read without locks, the status machine runs, and one statement —
/// a transaction of its own — locks the rows it writes, checks that none has moved since the read, and
/// only then appends and writes (`write_and_append` with `unmoved`). Two round trips instead of four
/// (`BEGIN`, the locking read, the write, `COMMIT`): at a thousand changes a second each round trip is a
/// statement the database runs, on its busiest core. When a row did move in between (another replica's
/// round, an erasure), nothing was written and the round runs again under locks, which cannot miss.
async fn apply_round(
    connection: &mut PgConnection,
    round: &[Pending],
) -> Result<Vec<Option<Applied>>, StoreError> {
    let mut ids: Vec<&str> = round.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();

    let read = read_rows(&mut *connection, BY_IDS, &ids).await?;
    let merged = Merged::of(read, round);
    if let Some(first) = write_and_append(
        &mut *connection,
        &merged.written(),
        &merged.appended,
        Some(&merged.unmoved()),
    )
    .await?
    {
        return Ok(merged.outcomes(first));
    }

    // Locked in id order (the query sorts before it locks): rounds of different replicas take shared
    // rows in the same order, and serialise news about one application across replicas.
    let mut tx = connection.begin().await?;
    let locked = read_rows(&mut tx, BY_IDS_FOR_UPDATE, &ids).await?;
    let merged = Merged::of(locked, round);
    let first = write_and_append(&mut tx, &merged.written(), &merged.appended, None)
        .await?
        .unwrap_or_default();
    tx.commit().await?;
    Ok(merged.outcomes(first))
}

/// The current rows of `ids`, by id, read with `query` (`BY_IDS` or `BY_IDS_FOR_UPDATE`).
async fn read_rows(
    connection: &mut PgConnection,
    query: &'static str,
    ids: &[&str],
) -> Result<HashMap<String, RoundRow>, StoreError> {
    let mut rows = HashMap::with_capacity(ids.len());
    for row in sqlx::query(query).bind(ids).fetch_all(connection).await? {
        let current = event(&row)?;
        let unchanged: i64 = row.try_get("unchanged_polls")?;
        let unchanged_polls = u32::try_from(unchanged).unwrap_or(u32::MAX);
        rows.insert(
            current.application.id.as_str().to_owned(),
            RoundRow {
                read_version: current.application.version,
                read_unchanged_polls: unchanged_polls,
                current: current.application,
                seq: Seq::Stored(current.seq),
                unchanged_polls,
                write: None,
            },
        );
    }
    Ok(rows)
}

/// A round's news applied in memory to the rows as read.
struct Merged {
    rows: HashMap<String, RoundRow>,
    /// The new versions, in the order they are appended.
    appended: Vec<Application>,
    outcomes: Vec<Option<(Application, Seq, bool)>>,
}

impl Merged {
    /// The status machine, item by item: news about one application in the same round builds on what
    /// the earlier items made of it.
    fn of(mut rows: HashMap<String, RoundRow>, round: &[Pending]) -> Merged {
        let now = crate::domain::now();
        let mut appended: Vec<Application> = Vec::new();
        let mut outcomes = Vec::with_capacity(round.len());
        for pending in round {
            let Some(row) = rows.get_mut(pending.id.as_str()) else {
                outcomes.push(None);
                continue;
            };
            match row.current.apply(&pending.seen, now) {
                Some(next) => {
                    row.unchanged_polls = 0;
                    row.write = Some(next_poll(&pending.schedule, &next, 0, now));
                    row.seq = Seq::Appended(appended.len());
                    appended.push(next.clone());
                    row.current = next;
                    outcomes.push(Some((row.current.clone(), row.seq, true)));
                }
                None => {
                    if pending.source == Source::Poll {
                        row.unchanged_polls = row.unchanged_polls.saturating_add(1);
                        row.write = Some(next_poll(
                            &pending.schedule,
                            &row.current,
                            row.unchanged_polls,
                            now,
                        ));
                    }
                    outcomes.push(Some((row.current.clone(), row.seq, false)));
                }
            }
        }
        Merged {
            rows,
            appended,
            outcomes,
        }
    }

    fn written(&self) -> Vec<Written<'_>> {
        self.rows
            .values()
            .filter_map(|r| {
                r.write.map(|next_poll_at| Written {
                    application: &r.current,
                    unchanged_polls: r.unchanged_polls,
                    next_poll_at,
                })
            })
            .collect()
    }

    /// What each row to be written must still hold when the write is made without locks taken first.
    fn unmoved(&self) -> Vec<Unmoved<'_>> {
        self.rows
            .iter()
            .filter(|(_, r)| r.write.is_some())
            .map(|(id, r)| Unmoved {
                id: id.as_str(),
                version: r.read_version,
                unchanged_polls: r.read_unchanged_polls,
            })
            .collect()
    }

    /// The outcomes, once the new versions are appended from sequence `first` on.
    fn outcomes(self, first: u64) -> Vec<Option<Applied>> {
        self.outcomes
            .into_iter()
            .map(|outcome| {
                outcome.map(|(application, seq, changed)| Applied {
                    event: Event {
                        seq: match seq {
                            Seq::Stored(seq) => seq,
                            Seq::Appended(n) => first + n as u64,
                        },
                        application,
                    },
                    changed,
                })
            })
            .collect()
    }
}

/// An application row as a write leaves it: its columns, and its poll schedule.
pub(super) struct Written<'a> {
    pub application: &'a Application,
    pub unchanged_polls: u32,
    pub next_poll_at: Option<i64>,
}

/// What a row must still hold for an optimistic round's write to be made: what the round read.
pub(super) struct Unmoved<'a> {
    pub id: &'a str,
    pub version: u64,
    pub unchanged_polls: u32,
}

/// The statement of `write_and_append`, given its guard: `$ctes` (more common table expressions, ending
/// in a comma), `$only_if` (a condition on both writes) and `$made` (whether the writes were made).
macro_rules! write_and_append_sql {
    ($ctes:literal, $only_if:literal, $made:literal) => {
        concat!(
            "WITH ",
            $ctes,
            " next AS ( \
                 UPDATE log_sequence SET value = value + $1 WHERE id = 1 AND $1 > 0",
            $only_if,
            " RETURNING value \
             ), appended AS ( \
                 INSERT INTO events (seq, application_id, version, owner, external_reference, person_id, \
                 status, upstream_status, last_known_status, baas_client_id, created_at, recorded_at) \
                 SELECT next.value - $1 + u.n, u.application_id, u.version, u.owner, u.external_reference, \
                 u.person_id, u.status, u.upstream_status, u.last_known_status, u.baas_client_id, \
                 u.created_at, u.recorded_at \
                 FROM next, unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[]) WITH ORDINALITY \
                 AS u(application_id, version, owner, external_reference, person_id, status, upstream_status, \
                 last_known_status, baas_client_id, created_at, recorded_at, n) \
                 RETURNING seq, application_id \
             ), written AS ( \
                 UPDATE applications AS a SET person_id = w.person_id, status = w.status, \
                 upstream_status = w.upstream_status, last_known_status = w.last_known_status, \
                 baas_client_id = w.baas_client_id, version = w.version, updated_at = w.updated_at, \
                 next_poll_at = w.next_poll_at, unchanged_polls = w.unchanged_polls, \
                 last_seq = coalesce(newest.seq, a.last_seq) \
                 FROM unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], \
                 $20::bigint[], $21::bigint[], $22::bigint[], $23::bigint[]) \
                 AS w(id, person_id, status, upstream_status, last_known_status, baas_client_id, version, \
                 updated_at, next_poll_at, unchanged_polls) \
                 LEFT JOIN (SELECT application_id, max(seq) AS seq FROM appended GROUP BY application_id) \
                 AS newest ON newest.application_id = w.id \
                 WHERE a.id = w.id",
            $only_if,
            " ) SELECT ",
            $made,
            ", (SELECT value FROM next), \
             (SELECT count(pg_notify($13, seq::text || ':' || application_id)) FROM appended)"
        )
    };
}

/// For rows locked before, or inserted by the same transaction.
const WRITE_AND_APPEND: &str = write_and_append_sql!("", "", "true");
/// For rows read without locks: the rows to write are locked here, in id order (as `BY_IDS_FOR_UPDATE`
/// locks them, so rounds cannot deadlock), before the counter; the writes are made only when every one
/// still holds what was read. A non-modifying `WITH` query runs when first referenced, and both writes
/// reference `unmoved`, so the rows are locked and checked before either writes.
const WRITE_AND_APPEND_UNMOVED: &str = write_and_append_sql!(
    "expected AS ( \
         SELECT * FROM unnest($24::text[], $25::bigint[], $26::bigint[]) \
         AS e(id, version, unchanged_polls) \
     ), locked AS ( \
         SELECT id, version, unchanged_polls FROM applications WHERE id = ANY($24::text[]) \
         ORDER BY id FOR UPDATE \
     ), unmoved AS ( \
         SELECT count(*) = cardinality($24::text[]) AS holds FROM locked JOIN expected USING (id) \
         WHERE locked.version = expected.version AND locked.unchanged_polls = expected.unchanged_polls \
     ),",
    " AND (SELECT holds FROM unmoved)",
    "(SELECT holds FROM unmoved)"
);

/// Writes every row in `written`, appends `versions` to the event log in this order, points each row at
/// its newest version (`last_seq`) and notifies the other replicas; returns the sequence of the first
/// version (the rest follow it), or 0 when there is none. Every application in `versions` is in `written`.
/// With `unmoved`, nothing is written unless every row named there still holds what it says, and `None`
/// comes back when one does not.
///
/// One statement: each row is updated once, with its pointer (two updates of a row are two tuples and,
/// when the poll time changes, two sets of index entries), and the counter's row lock is taken inside the
/// statement that ends the transaction's work, so it is held for the statement and the commit only — not
/// for a round trip per step. The rows themselves are locked before the counter (`BY_IDS_FOR_UPDATE`,
/// `unmoved`'s lock, or inserted by this transaction), so the statement waits for no other lock once it
/// holds the counter.
pub(super) async fn write_and_append(
    connection: &mut PgConnection,
    written: &[Written<'_>],
    versions: &[Application],
    unmoved: Option<&[Unmoved<'_>]>,
) -> Result<Option<u64>, StoreError> {
    if written.is_empty() && versions.is_empty() {
        return Ok(Some(0));
    }
    let text = |f: fn(&Application) -> Option<String>| -> Vec<Option<String>> {
        versions.iter().map(f).collect()
    };
    let integer = |f: fn(&Application) -> i64| -> Vec<i64> { versions.iter().map(f).collect() };
    let row_text = |f: fn(&Application) -> Option<String>| -> Vec<Option<String>> {
        written.iter().map(|w| f(w.application)).collect()
    };
    let row_integer =
        |f: fn(&Written) -> Option<i64>| -> Vec<Option<i64>> { written.iter().map(f).collect() };
    // Data-modifying CTEs all run, referenced or not; with no version to append, `next` updates nothing
    // (the counter is not locked) and nothing is appended. `pg_notify` (in the final query, so that it
    // runs once per appended row) delivers to listeners when, and only if, the transaction commits.
    let query = sqlx::query_as(if unmoved.is_some() {
        WRITE_AND_APPEND_UNMOVED
    } else {
        WRITE_AND_APPEND
    })
    .bind(versions.len() as i64)
    .bind(text(|a| Some(a.id.as_str().to_owned())))
    .bind(integer(|a| a.version as i64))
    .bind(text(|a| Some(a.owner.clone())))
    .bind(text(|a| Some(a.external_reference.clone())))
    .bind(text(|a| a.person_id.clone()))
    .bind(text(|a| Some(a.status.as_str().to_owned())))
    .bind(text(|a| Some(a.upstream_status.clone())))
    .bind(text(|a| Some(a.last_known_status.as_str().to_owned())))
    .bind(text(|a| a.baas_client_id.clone()))
    .bind(integer(|a| micros(a.create_time)))
    .bind(integer(|a| micros(a.update_time)))
    .bind(CHANNEL)
    .bind(row_text(|a| Some(a.id.as_str().to_owned())))
    .bind(row_text(|a| a.person_id.clone()))
    .bind(row_text(|a| Some(a.status.as_str().to_owned())))
    .bind(row_text(|a| Some(a.upstream_status.clone())))
    .bind(row_text(|a| Some(a.last_known_status.as_str().to_owned())))
    .bind(row_text(|a| a.baas_client_id.clone()))
    .bind(row_integer(|w| Some(w.application.version as i64)))
    .bind(row_integer(|w| Some(micros(w.application.update_time))))
    .bind(row_integer(|w| w.next_poll_at))
    .bind(row_integer(|w| Some(i64::from(w.unchanged_polls))));
    let query = match unmoved {
        Some(unmoved) => query
            .bind(unmoved.iter().map(|u| u.id).collect::<Vec<_>>())
            .bind(unmoved.iter().map(|u| u.version as i64).collect::<Vec<_>>())
            .bind(
                unmoved
                    .iter()
                    .map(|u| i64::from(u.unchanged_polls))
                    .collect::<Vec<_>>(),
            ),
        None => query,
    };
    let (made, last, _notified): (bool, Option<i64>, i64) = query.fetch_one(connection).await?;
    Ok(made.then(|| last.map_or(0, |last| (last - versions.len() as i64 + 1) as u64)))
}

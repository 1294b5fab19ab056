//! The bulk read of a SQLite file: every entry, page after page, for a server's start-up.
//!
//! sqlx reads SQLite on a worker thread and hands each row over as a copy of every value,
//! which at ten million entries (and thirty million selectors) is most of a cold start.
//! Here one connection of our own reads the pages on a blocking thread inside one read
//! transaction (so every page comes from the same snapshot), straight from SQLite's row
//! buffers into [`EntryBlock`]s, and hands whole blocks to the async side. It runs the
//! same queries with the same decoding rules as the sqlx path (`entries::list_block`).

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row, Statement};

use super::entries::{BULK_CHILDREN, bulk_page_query};
use super::{db::GO_ZERO_TIME_UNIX, timefmt};
use crate::block::{EntryBlock, EntryColumns};
use crate::error::{DataStoreError, Result};

/// Where to read.
#[derive(Debug, Clone)]
pub(crate) struct BulkSource {
    pub(crate) path: PathBuf,
    pub(crate) busy: Duration,
    /// The connection string asked for `mode=ro`.
    pub(crate) read_only: bool,
}

fn sql_err(e: rusqlite::Error) -> DataStoreError {
    DataStoreError::sql(format!("datastore-sql: bulk read: {e}"))
}

fn col_err(i: usize, what: &str, v: ValueRef<'_>) -> DataStoreError {
    DataStoreError::sql(format!(
        "decoding column {i}: expected {what}, got {:?}",
        v.data_type()
    ))
}

fn int(r: &Row<'_>, i: usize) -> Result<i64> {
    match r.get_ref(i).map_err(sql_err)? {
        ValueRef::Null => Ok(0),
        ValueRef::Integer(v) => Ok(v),
        v => Err(col_err(i, "an integer", v)),
    }
}

fn boolean(r: &Row<'_>, i: usize) -> Result<bool> {
    int(r, i).map(|v| v != 0)
}

/// Text as the sqlx path reads it: NULL is empty, integers print in decimal, blobs are
/// read as UTF-8 with replacement.
fn text<'r>(r: &'r Row<'_>, i: usize) -> Result<std::borrow::Cow<'r, str>> {
    use std::borrow::Cow;
    match r.get_ref(i).map_err(sql_err)? {
        ValueRef::Null => Ok(Cow::Borrowed("")),
        ValueRef::Text(b) => std::str::from_utf8(b)
            .map(Cow::Borrowed)
            .map_err(|e| DataStoreError::sql(format!("decoding column {i}: {e}"))),
        ValueRef::Blob(b) => Ok(String::from_utf8_lossy(b)),
        ValueRef::Integer(v) => Ok(Cow::Owned(v.to_string())),
        v => Err(col_err(i, "text", v)),
    }
}

/// A datetime column as go-sqlite3 reads it, rounded to Unix seconds (the zero time when
/// NULL or unparseable).
fn time_secs(r: &Row<'_>, i: usize) -> Result<i64> {
    let t = match r.get_ref(i).map_err(sql_err)? {
        ValueRef::Null => None,
        ValueRef::Integer(v) => Some(timefmt::from_unix_or_millis(v)?),
        ValueRef::Real(v) => Some(timefmt::from_julian_day(v)?),
        ValueRef::Text(b) => std::str::from_utf8(b).ok().and_then(timefmt::parse_sqlite),
        ValueRef::Blob(_) => None,
    };
    Ok(t.map_or(GO_ZERO_TIME_UNIX, timefmt::round_to_secs))
}

fn open(src: &BulkSource) -> Result<Connection> {
    // Opened as the server's own connections are (read-write unless `mode=ro`, never
    // created), but only ever reads.
    let mode = if src.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let c = Connection::open_with_flags(&src.path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql_err)?;
    c.busy_timeout(src.busy).map_err(sql_err)?;
    c.execute_batch("PRAGMA query_only = ON").map_err(sql_err)?;
    Ok(c)
}

/// The prepared page query and child queries.
struct Queries<'c> {
    page: Statement<'c>,
    children: Vec<Statement<'c>>,
}

impl<'c> Queries<'c> {
    fn prepare(c: &'c Connection) -> Result<Self> {
        Ok(Self {
            page: c.prepare(&bulk_page_query()).map_err(sql_err)?,
            children: BULK_CHILDREN
                .iter()
                .map(|q| c.prepare(q).map_err(sql_err))
                .collect::<Result<_>>()?,
        })
    }
}

fn read_block(q: &mut Queries<'_>, after: i64, page: u32) -> Result<EntryBlock> {
    let mut rows = q.page.query((after, page)).map_err(sql_err)?;
    let mut block = EntryBlock::with_capacity(page as usize);
    while let Some(r) = rows.next().map_err(sql_err)? {
        block.push_entry(&EntryColumns {
            row_id: int(r, 0)?,
            entry_id: &text(r, 1)?,
            spiffe_id: &text(r, 2)?,
            parent_id: &text(r, 3)?,
            x509_svid_ttl: int(r, 4)?,
            admin: boolean(r, 5)?,
            downstream: boolean(r, 6)?,
            entry_expiry: int(r, 7)?,
            revision_number: int(r, 8)?,
            store_svid: boolean(r, 9)?,
            hint: &text(r, 10)?,
            jwt_svid_ttl: int(r, 11)?,
            created_at: time_secs(r, 12)?,
        })?;
    }
    drop(rows);
    let (Some(first), Some(last)) = (block.iter().next().map(|e| e.row_id()), block.last_row_id())
    else {
        return Ok(block);
    };
    for (kind, child) in q.children.iter_mut().enumerate() {
        block.start_children();
        let mut rows = child.query((first, last)).map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            let entry = int(r, 0)?;
            match kind {
                0 => block.push_selector(entry, &text(r, 1)?, &text(r, 2)?)?,
                1 => block.push_dns_name(entry, &text(r, 1)?)?,
                _ => block.push_federated(entry, &text(r, 1)?)?,
            }
        }
    }
    Ok(block)
}

enum Msg {
    Block(EntryBlock),
    Failed(DataStoreError),
    Done,
}

/// Reads every page on a blocking thread; the thread stops at the end, at the first
/// error (which it passes on), or when the stream is dropped. A reader that stops
/// without saying so (a panic) ends the stream with an error, never short.
pub(crate) fn entry_blocks(src: BulkSource, page: u32) -> BoxStream<'static, Result<EntryBlock>> {
    let page = page.max(1);
    // Two blocks in flight: one being indexed, one ready; the reader fills a third.
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(2);
    tokio::task::spawn_blocking(move || {
        let run = || -> Result<bool> {
            let c = open(&src)?;
            // One snapshot for every page.
            c.execute_batch("BEGIN").map_err(sql_err)?;
            let mut queries = Queries::prepare(&c)?;
            let mut after = 0;
            loop {
                let block = read_block(&mut queries, after, page)?;
                let next = block.last_row_id();
                let full = block.len() == page as usize;
                if !block.is_empty() && tx.blocking_send(Msg::Block(block)).is_err() {
                    return Ok(false);
                }
                match next {
                    Some(n) if full => after = n,
                    _ => break,
                }
            }
            drop(queries);
            c.execute_batch("COMMIT").map_err(sql_err)?;
            Ok(true)
        };
        let last = match run() {
            Ok(true) => Msg::Done,
            Ok(false) => return,
            Err(e) => Msg::Failed(e),
        };
        let _ = tx.blocking_send(last);
    });
    futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Msg::Block(b)) => Some((Ok(b), Some(rx))),
            Some(Msg::Done) => None,
            Some(Msg::Failed(e)) => Some((Err(e), None)),
            None => Some((
                Err(DataStoreError::Internal(
                    "datastore-sql: the bulk reader of registration entries stopped".into(),
                )),
                None,
            )),
        }
    })
    .boxed()
}

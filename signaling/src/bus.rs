//! The realtime bus: one channel per stream carrying chat, moderation,
//! viewer counts, stream status and integrator events to every WebSocket
//! client and [`EventFeed`] of the stream — in this process, and through
//! Redis pub/sub to every other relaycast node when configured.
//!
//! Delivery is local first: a message posted here reaches local
//! subscribers at once and is published to Redis (channel
//! `{prefix}:rt:{stream}`) with this node's id; every node's subscriber
//! task (`PSUBSCRIBE {prefix}:rt:*`) delivers messages from other nodes
//! and skips its own. Redis also keeps what a node joining later needs:
//! chat history (`XADD … MAXLEN ~`), deleted ids, slow mode and bans
//! (hash), the per-stream event sequence (`INCR`), idempotency records
//! (`SET NX EX`) and per-node viewer counts (hash field per node with an
//! expiry stamp; readers sum the fresh ones).
//!
//! Slow consumers never hold anything up: channels are tokio broadcasts,
//! a receiver that falls behind loses the oldest messages.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::chat::{ChatError, ChatLimits, ChatRules};
use crate::message::{ChatMessage, IntegratorEvent, MediaStamp, Message, StreamStatus};

/// Messages a stream channel buffers for a slow receiver before it lags.
const CHANNEL_CAPACITY: usize = 256;
/// Chat lines Redis keeps per stream (approximately; `MAXLEN ~`).
const REDIS_HISTORY: usize = 200;
/// How long a node's viewer count stays valid without a refresh.
const VIEWER_TTL_MS: u64 = 5_000;
/// Idempotency records are kept this long.
const IDEMPOTENCY_TTL_SECS: u64 = 24 * 3600;
/// In-memory idempotency records kept per node (oldest evicted first).
const IDEMPOTENCY_MEMORY: usize = 10_000;
/// Largest integrator event body, in bytes.
pub const MAX_EVENT_BYTES: usize = 4096;

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Redis refused or dropped a command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A value read back from Redis is not what relaycast wrote.
    #[error("unexpected data in redis key {key}")]
    Corrupt { key: String },
}

/// Why an integrator event was refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The `Idempotency-Key` was used before with another body.
    #[error("idempotency key reused with a different body")]
    IdempotencyConflict,
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Who posts a chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub user: String,
    /// Stream owner or admin: may delete, ban, set slow mode, and is not
    /// rate limited.
    pub moderator: bool,
}

/// What a client gets when it joins a stream's channel.
pub struct Joined {
    pub rx: broadcast::Receiver<Arc<Message>>,
    /// Recent chat lines, oldest first.
    pub history: Vec<ChatMessage>,
    pub slow_mode: u32,
    /// Last viewer count pushed on this node, if any yet.
    pub viewers: Option<u64>,
}

/// Local viewer counts the presence task publishes (the SFU, in relaycast).
pub trait ViewerSource: Send + Sync + 'static {
    /// Streams that may have viewers on this node.
    fn streams(&self) -> Vec<String>;
    /// Viewers of `stream` on this node.
    fn viewers(&self, stream: &str) -> usize;
}

/// A stream's integrator events, in order — the interface the LL-HLS
/// packager (`EXT-X-DATERANGE`) and the WebRTC data channel consume.
/// Obtained from [`Bus::event_feed`]; it sees events posted on any node
/// from the moment it is created. Dropping it unsubscribes.
pub struct EventFeed {
    rx: broadcast::Receiver<Arc<Message>>,
}

/// The feed fell behind and lost events (it keeps the newest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event feed lagged, {0} messages lost")]
pub struct Lagged(pub u64);

impl EventFeed {
    /// The next event; `Err(Lagged)` when the consumer fell behind by more
    /// than the channel's capacity (the next call continues with the
    /// oldest kept event; `seq` shows the gap); `Ok(None)` once the bus is
    /// gone.
    pub async fn recv(&mut self) -> Result<Option<Arc<IntegratorEvent>>, Lagged> {
        loop {
            match self.rx.recv().await {
                Ok(m) => {
                    if let Message::Event(e) = &*m {
                        return Ok(Some(Arc::new(e.clone())));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }
}

struct Room {
    tx: broadcast::Sender<Arc<Message>>,
    rules: ChatRules,
    /// Chat history when no Redis is configured.
    history: VecDeque<ChatMessage>,
    /// Moderation state loaded from Redis for this room already.
    loaded: bool,
    /// Last viewer count delivered to local clients.
    viewers: Option<u64>,
    /// Event sequence when no Redis is configured.
    seq: u64,
}

impl Room {
    fn new() -> Room {
        Room {
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
            rules: ChatRules::default(),
            history: VecDeque::new(),
            loaded: false,
            viewers: None,
            seq: 0,
        }
    }
}

#[derive(Clone)]
struct RedisLink {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisLink {
    fn key(&self, what: &str, stream: &str) -> String {
        format!("{}:{what}:{stream}", self.prefix)
    }
}

/// (stream, key) → (body hash, event), and insertion order for eviction.
#[derive(Default)]
struct IdempotencyMemory {
    records: HashMap<(String, String), (String, Arc<IntegratorEvent>)>,
    order: VecDeque<(String, String)>,
}

struct Inner {
    node: String,
    limits: ChatLimits,
    rooms: Mutex<HashMap<String, Room>>,
    redis: Option<RedisLink>,
    /// Memory idempotency records: (stream, key) → (body hash, event).
    idempotency: Mutex<IdempotencyMemory>,
    /// Serialises sequence allocation and publication per node so local
    /// subscribers see events in `seq` order.
    event_order: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().drain(..) {
            t.abort();
        }
    }
}

/// Handle to the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    node: String,
    stream: String,
    msg: Message,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IdempotencyRecord {
    hash: String,
    event: IntegratorEvent,
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Unix milliseconds now (the bus is a driver: it reads the clock; the
/// rules it applies take time as an argument).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Hex SHA-256 of an event body, the idempotency comparison value.
pub fn body_hash(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Bus {
    /// A bus inside this process only.
    pub fn local(limits: ChatLimits) -> Bus {
        Bus {
            inner: Arc::new(Inner {
                node: random_id(),
                limits,
                rooms: Mutex::new(HashMap::new()),
                redis: None,
                idempotency: Mutex::new(IdempotencyMemory::default()),
                event_order: tokio::sync::Mutex::new(()),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A bus shared with every node using the same Redis and `prefix`.
    /// Fails when Redis cannot be reached now; later outages are retried
    /// (the subscriber reconnects; commands fail and are logged).
    pub async fn with_redis(url: &str, prefix: &str, limits: ChatLimits) -> Result<Bus, BusError> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        let mut pubsub = client.get_async_pubsub().await?;
        let link = RedisLink {
            conn,
            prefix: prefix.to_string(),
        };
        let pattern = format!("{prefix}:rt:*");
        pubsub.psubscribe(&pattern).await?;
        let bus = Bus {
            inner: Arc::new(Inner {
                node: random_id(),
                limits,
                rooms: Mutex::new(HashMap::new()),
                redis: Some(link),
                idempotency: Mutex::new(IdempotencyMemory::default()),
                event_order: tokio::sync::Mutex::new(()),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let weak = Arc::downgrade(&bus.inner);
        let task = tokio::spawn(subscriber(weak, client, pattern, pubsub));
        bus.inner.tasks.lock().push(task);
        Ok(bus)
    }

    /// This node's id on the bus (random per process).
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    pub fn uses_redis(&self) -> bool {
        self.inner.redis.is_some()
    }

    fn sender(&self, stream: &str) -> broadcast::Sender<Arc<Message>> {
        self.inner
            .rooms
            .lock()
            .entry(stream.to_string())
            .or_insert_with(Room::new)
            .tx
            .clone()
    }

    /// Applies a message to this node's room state and hands it to local
    /// subscribers.
    fn deliver(&self, stream: &str, msg: Message) {
        let mut rooms = self.inner.rooms.lock();
        let room = rooms.entry(stream.to_string()).or_insert_with(Room::new);
        match &msg {
            Message::Chat(c) if self.inner.redis.is_none() => {
                room.history.push_back(c.clone());
                while room.history.len() > self.inner.limits.history {
                    room.history.pop_front();
                }
            }
            Message::Deleted { id } => room.history.retain(|c| &c.id != id),
            Message::Banned { user, until_ms } => room.rules.ban(user, *until_ms),
            Message::SlowMode { seconds } => room.rules.set_slow_mode(*seconds),
            Message::Viewers { count } => room.viewers = Some(*count),
            _ => {}
        }
        // No receiver is fine: nobody watches this stream here.
        let _ = room.tx.send(Arc::new(msg));
    }

    /// Delivers locally and, with Redis, to every other node.
    async fn broadcast(&self, stream: &str, msg: Message) {
        self.deliver(stream, msg.clone());
        if let Some(r) = &self.inner.redis {
            let env = Envelope {
                node: self.inner.node.clone(),
                stream: stream.to_string(),
                msg,
            };
            let payload = match serde_json::to_string(&env) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("encoding bus message: {e}");
                    return;
                }
            };
            let mut conn = r.conn.clone();
            if let Err(e) = conn
                .publish::<_, _, i64>(r.key("rt", stream), payload)
                .await
            {
                tracing::warn!(stream, "publishing to redis: {e}");
            }
        }
    }

    /// Loads moderation state kept in Redis the first time this node sees
    /// the stream.
    async fn load_room(&self, stream: &str) -> Result<(), BusError> {
        let Some(r) = &self.inner.redis else {
            return Ok(());
        };
        if self
            .inner
            .rooms
            .lock()
            .get(stream)
            .is_some_and(|room| room.loaded)
        {
            return Ok(());
        }
        let mut conn = r.conn.clone();
        let state: HashMap<String, String> = conn.hgetall(r.key("mod", stream)).await?;
        let mut rooms = self.inner.rooms.lock();
        let room = rooms.entry(stream.to_string()).or_insert_with(Room::new);
        if room.loaded {
            return Ok(());
        }
        for (field, value) in state {
            if field == "slow_mode" {
                room.rules.set_slow_mode(value.parse().unwrap_or(0));
            } else if let Some(user) = field.strip_prefix("ban:") {
                let until = value.parse::<u64>().ok().filter(|&u| u > 0);
                room.rules.ban(user, until);
            }
        }
        room.loaded = true;
        Ok(())
    }

    /// Subscribes to a stream's channel and returns recent history.
    pub async fn join(&self, stream: &str) -> Result<Joined, BusError> {
        self.load_room(stream).await?;
        // Subscribe before reading history: a line posted in between is
        // seen twice rather than lost (clients de-duplicate by id).
        let rx = self.sender(stream).subscribe();
        let history = self.history(stream).await?;
        let rooms = self.inner.rooms.lock();
        let room = rooms.get(stream);
        Ok(Joined {
            rx,
            history,
            slow_mode: room.map_or(0, |r| r.rules.slow_mode()),
            viewers: room.and_then(|r| r.viewers),
        })
    }

    /// Recent chat lines of a stream, oldest first.
    pub async fn history(&self, stream: &str) -> Result<Vec<ChatMessage>, BusError> {
        let n = self.inner.limits.history;
        let Some(r) = &self.inner.redis else {
            return Ok(self
                .inner
                .rooms
                .lock()
                .get(stream)
                .map(|room| room.history.iter().cloned().collect())
                .unwrap_or_default());
        };
        let mut conn = r.conn.clone();
        let key = r.key("chat", stream);
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(n)
            .query_async(&mut conn)
            .await?;
        let deleted: HashSet<String> = conn.smembers(r.key("deleted", stream)).await?;
        let mut out = Vec::with_capacity(entries.len());
        for (_, fields) in entries.into_iter().rev() {
            let Some(json) = fields.get(1) else {
                return Err(BusError::Corrupt { key });
            };
            let msg: ChatMessage =
                serde_json::from_str(json).map_err(|_| BusError::Corrupt { key: key.clone() })?;
            if !deleted.contains(&msg.id) {
                out.push(msg);
            }
        }
        Ok(out)
    }

    /// Posts a chat line after applying the stream's rules.
    pub async fn post_chat(
        &self,
        stream: &str,
        author: &Author,
        text: &str,
    ) -> Result<ChatMessage, PostError> {
        self.load_room(stream).await?;
        let now = unix_ms();
        let msg = {
            let mut rooms = self.inner.rooms.lock();
            let room = rooms.entry(stream.to_string()).or_insert_with(Room::new);
            let text = room.rules.admit(
                &self.inner.limits,
                &author.user,
                author.moderator,
                text,
                now,
            )?;
            ChatMessage {
                id: random_id(),
                user: author.user.clone(),
                text: text.to_string(),
                at_ms: now,
            }
        };
        if let Some(r) = &self.inner.redis {
            let json = serde_json::to_string(&msg)
                .map_err(|_| BusError::Corrupt { key: "chat".into() })?;
            let mut conn = r.conn.clone();
            redis::cmd("XADD")
                .arg(r.key("chat", stream))
                .arg("MAXLEN")
                .arg("~")
                .arg(REDIS_HISTORY)
                .arg("*")
                .arg("m")
                .arg(json)
                .query_async::<String>(&mut conn)
                .await?;
        }
        self.broadcast(stream, Message::Chat(msg.clone())).await;
        Ok(msg)
    }

    /// Removes a chat line from history and from clients' views.
    pub async fn delete_chat(&self, stream: &str, id: &str) -> Result<(), BusError> {
        if let Some(r) = &self.inner.redis {
            let mut conn = r.conn.clone();
            let key = r.key("deleted", stream);
            conn.sadd::<_, _, i64>(&key, id).await?;
            conn.expire::<_, i64>(&key, 7 * 24 * 3600).await?;
        }
        self.broadcast(stream, Message::Deleted { id: id.to_string() })
            .await;
        Ok(())
    }

    /// Bans `user` from the stream's chat for `seconds` (for good if `None`).
    pub async fn ban(
        &self,
        stream: &str,
        user: &str,
        seconds: Option<u64>,
    ) -> Result<(), BusError> {
        let until_ms = seconds.map(|s| unix_ms().saturating_add(s.saturating_mul(1000)));
        if let Some(r) = &self.inner.redis {
            let mut conn = r.conn.clone();
            conn.hset::<_, _, _, i64>(
                r.key("mod", stream),
                format!("ban:{user}"),
                until_ms.unwrap_or(0),
            )
            .await?;
        }
        self.broadcast(
            stream,
            Message::Banned {
                user: user.to_string(),
                until_ms,
            },
        )
        .await;
        Ok(())
    }

    /// Sets slow mode (0 turns it off).
    pub async fn set_slow_mode(&self, stream: &str, seconds: u32) -> Result<(), BusError> {
        if let Some(r) = &self.inner.redis {
            let mut conn = r.conn.clone();
            conn.hset::<_, _, _, i64>(r.key("mod", stream), "slow_mode", seconds)
                .await?;
        }
        self.broadcast(stream, Message::SlowMode { seconds }).await;
        Ok(())
    }

    /// Announces a publisher status change. Each node announces what its
    /// own SFU sees; the publisher is on one node, so there is one source.
    pub async fn publish_status(&self, stream: &str, status: StreamStatus, at_ms: u64) {
        self.broadcast(stream, Message::Status { status, at_ms })
            .await;
    }

    /// Sequences, stamps and delivers an integrator event. With an
    /// idempotency key, the same key and body return the first event
    /// (`fresh == false`) and another body is refused.
    pub async fn post_event(
        &self,
        stream: &str,
        payload: serde_json::Value,
        body: &[u8],
        idempotency_key: Option<&str>,
        media: Option<MediaStamp>,
    ) -> Result<(Arc<IntegratorEvent>, bool), EventError> {
        let hash = body_hash(body);
        if let Some(key) = idempotency_key {
            if let Some(prev) = self.idempotent_lookup(stream, key).await? {
                return if prev.0 == hash {
                    Ok((prev.1, false))
                } else {
                    Err(EventError::IdempotencyConflict)
                };
            }
        }
        let _order = self.inner.event_order.lock().await;
        let seq = self.next_seq(stream).await?;
        let event = Arc::new(IntegratorEvent {
            stream: stream.to_string(),
            seq,
            id: random_id(),
            at_ms: unix_ms(),
            media,
            payload,
        });
        if let Some(key) = idempotency_key {
            // Another request with the same key may have won meanwhile.
            if let Some(prev) = self.idempotent_store(stream, key, &hash, &event).await? {
                return if prev.0 == hash {
                    Ok((prev.1, false))
                } else {
                    Err(EventError::IdempotencyConflict)
                };
            }
        }
        self.broadcast(stream, Message::Event((*event).clone()))
            .await;
        Ok((event, true))
    }

    async fn next_seq(&self, stream: &str) -> Result<u64, BusError> {
        if let Some(r) = &self.inner.redis {
            let mut conn = r.conn.clone();
            let n: u64 = conn.incr(r.key("seq", stream), 1u64).await?;
            return Ok(n);
        }
        let mut rooms = self.inner.rooms.lock();
        let room = rooms.entry(stream.to_string()).or_insert_with(Room::new);
        room.seq += 1;
        Ok(room.seq)
    }

    async fn idempotent_lookup(
        &self,
        stream: &str,
        key: &str,
    ) -> Result<Option<(String, Arc<IntegratorEvent>)>, BusError> {
        if let Some(r) = &self.inner.redis {
            let mut conn = r.conn.clone();
            let rkey = r.key("idem", &format!("{stream}:{}", body_hash(key.as_bytes())));
            let raw: Option<String> = conn.get(&rkey).await?;
            return match raw {
                None => Ok(None),
                Some(raw) => {
                    let rec: IdempotencyRecord =
                        serde_json::from_str(&raw).map_err(|_| BusError::Corrupt { key: rkey })?;
                    Ok(Some((rec.hash, Arc::new(rec.event))))
                }
            };
        }
        Ok(self
            .inner
            .idempotency
            .lock()
            .records
            .get(&(stream.to_string(), key.to_string()))
            .cloned())
    }

    /// Records `event` under `key` unless a record exists; returns the
    /// existing record in that case.
    async fn idempotent_store(
        &self,
        stream: &str,
        key: &str,
        hash: &str,
        event: &Arc<IntegratorEvent>,
    ) -> Result<Option<(String, Arc<IntegratorEvent>)>, BusError> {
        if let Some(r) = &self.inner.redis {
            let rec = IdempotencyRecord {
                hash: hash.to_string(),
                event: (**event).clone(),
            };
            let json = serde_json::to_string(&rec)
                .map_err(|_| BusError::Corrupt { key: "idem".into() })?;
            let mut conn = r.conn.clone();
            let rkey = r.key("idem", &format!("{stream}:{}", body_hash(key.as_bytes())));
            let set: Option<String> = redis::cmd("SET")
                .arg(&rkey)
                .arg(json)
                .arg("NX")
                .arg("EX")
                .arg(IDEMPOTENCY_TTL_SECS)
                .query_async(&mut conn)
                .await?;
            if set.is_some() {
                return Ok(None);
            }
            return self.idempotent_lookup(stream, key).await;
        }
        let mut guard = self.inner.idempotency.lock();
        let IdempotencyMemory {
            records: map,
            order,
        } = &mut *guard;
        let k = (stream.to_string(), key.to_string());
        if let Some(prev) = map.get(&k) {
            return Ok(Some(prev.clone()));
        }
        map.insert(k.clone(), (hash.to_string(), Arc::clone(event)));
        order.push_back(k);
        while order.len() > IDEMPOTENCY_MEMORY {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
        Ok(None)
    }

    /// The integrator events of `stream` from now on (see [`EventFeed`]).
    pub fn event_feed(&self, stream: &str) -> EventFeed {
        EventFeed {
            rx: self.sender(stream).subscribe(),
        }
    }

    /// Starts the presence task: every second it publishes this node's
    /// viewer counts (to Redis when configured), sums them over nodes and
    /// pushes a `viewers` message to a stream's local clients when the
    /// total changed — so clients get at most one count per second.
    pub fn start_presence(&self, source: Arc<dyn ViewerSource>) {
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reported: HashSet<String> = HashSet::new();
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let bus = Bus { inner };
                if let Err(e) = bus.presence_round(source.as_ref(), &mut reported).await {
                    tracing::warn!("viewer counts: {e}");
                }
            }
        });
        self.inner.tasks.lock().push(task);
    }

    async fn presence_round(
        &self,
        source: &dyn ViewerSource,
        reported: &mut HashSet<String>,
    ) -> Result<(), BusError> {
        let now = unix_ms();
        // Streams with local clients, streams with local viewers, and those
        // we reported before (so a drop to zero is published too).
        let watched: Vec<String> = {
            let mut rooms = self.inner.rooms.lock();
            rooms.retain(|_, room| {
                room.rules.prune(now);
                // A room without subscribers is kept only for what it
                // remembers in memory mode (history, rules).
                room.tx.receiver_count() > 0
                    || !room.history.is_empty()
                    || room.seq > 0
                    || room.rules.slow_mode() > 0
            });
            rooms
                .iter()
                .filter(|(_, r)| r.tx.receiver_count() > 0)
                .map(|(s, _)| s.clone())
                .collect()
        };
        let mut local: HashMap<String, u64> = HashMap::new();
        for s in source.streams().into_iter().chain(reported.iter().cloned()) {
            let n = source.viewers(&s) as u64;
            local.insert(s, n);
        }
        for s in &watched {
            local
                .entry(s.clone())
                .or_insert_with(|| source.viewers(s) as u64);
        }
        reported.retain(|s| local.get(s).is_some_and(|&n| n > 0));
        let mut totals: HashMap<String, u64> = HashMap::new();
        if let Some(r) = &self.inner.redis {
            let mut conn = r.conn.clone();
            let mut pipe = redis::pipe();
            for (s, n) in &local {
                if *n > 0 || reported.contains(s) || watched.contains(s) {
                    let key = r.key("viewers", s);
                    pipe.hset(
                        &key,
                        &self.inner.node,
                        format!("{n}:{}", now + VIEWER_TTL_MS),
                    )
                    .ignore()
                    .pexpire(&key, (VIEWER_TTL_MS * 2) as i64)
                    .ignore();
                }
            }
            pipe.query_async::<()>(&mut conn).await?;
            for s in &watched {
                let fields: HashMap<String, String> = conn.hgetall(r.key("viewers", s)).await?;
                totals.insert(s.clone(), sum_fresh(fields.values(), now));
            }
        } else {
            for s in &watched {
                totals.insert(s.clone(), local.get(s).copied().unwrap_or(0));
            }
        }
        for (s, n) in &local {
            if *n > 0 {
                reported.insert(s.clone());
            }
        }
        for (s, total) in totals {
            let changed = self
                .inner
                .rooms
                .lock()
                .get(&s)
                .is_none_or(|r| r.viewers != Some(total));
            if changed {
                // Each node computes the sum itself: local delivery only.
                self.deliver(&s, Message::Viewers { count: total });
            }
        }
        Ok(())
    }
}

/// Sums `count:expires_ms` values whose expiry is after `now_ms`.
fn sum_fresh<'a>(values: impl Iterator<Item = &'a String>, now_ms: u64) -> u64 {
    values
        .filter_map(|v| {
            let (n, exp) = v.split_once(':')?;
            let exp: u64 = exp.parse().ok()?;
            (exp > now_ms).then(|| n.parse::<u64>().ok()).flatten()
        })
        .sum()
}

/// Why a chat post failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl From<redis::RedisError> for PostError {
    fn from(e: redis::RedisError) -> PostError {
        PostError::Bus(BusError::Redis(e))
    }
}

/// Delivers other nodes' messages; reconnects after Redis outages.
async fn subscriber(
    weak: Weak<Inner>,
    client: redis::Client,
    pattern: String,
    first: redis::aio::PubSub,
) {
    use futures_util::StreamExt;
    let mut pubsub = Some(first);
    loop {
        let mut ps = match pubsub.take() {
            Some(p) => p,
            None => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if weak.strong_count() == 0 {
                    return;
                }
                match client.get_async_pubsub().await {
                    Ok(mut p) => match p.psubscribe(&pattern).await {
                        Ok(()) => p,
                        Err(e) => {
                            tracing::warn!("redis psubscribe: {e}");
                            continue;
                        }
                    },
                    Err(e) => {
                        tracing::warn!("redis pub/sub reconnect: {e}");
                        continue;
                    }
                }
            }
        };
        let mut messages = ps.on_message();
        while let Some(m) = messages.next().await {
            let Some(inner) = weak.upgrade() else { return };
            let env: Envelope = match serde_json::from_slice(m.get_payload_bytes()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(channel = m.get_channel_name(), "ignoring bus message: {e}");
                    continue;
                }
            };
            if env.node == inner.node {
                continue;
            }
            Bus { inner }.deliver(&env.stream, env.msg);
        }
        tracing::warn!("redis pub/sub connection lost; reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_node_counts_are_not_summed() {
        let v = [
            "3:2000".to_string(),
            "4:500".to_string(),
            "junk".to_string(),
        ];
        assert_eq!(sum_fresh(v.iter(), 1000), 3);
    }

    #[tokio::test]
    async fn local_bus_keeps_history_sequences_events_and_honours_idempotency() {
        let bus = Bus::local(ChatLimits::default());
        let alice = Author {
            user: "alice".into(),
            moderator: false,
        };
        let first = bus.post_chat("s", &alice, "one").await.expect("posted");
        bus.post_chat("s", &alice, "two").await.expect("posted");
        let mut joined = bus.join("s").await.expect("joined");
        assert_eq!(
            joined
                .history
                .iter()
                .map(|c| c.text.as_str())
                .collect::<Vec<_>>(),
            ["one", "two"]
        );
        bus.delete_chat("s", &first.id).await.expect("deleted");
        assert_eq!(bus.history("s").await.expect("history").len(), 1);
        let m = joined.rx.recv().await.expect("delete delivered");
        assert_eq!(*m, Message::Deleted { id: first.id });

        let mut feed = bus.event_feed("s");
        let body = br#"{"odds":2}"#;
        let v: serde_json::Value = serde_json::from_slice(body).expect("json");
        let (a, fresh) = bus
            .post_event("s", v.clone(), body, Some("k"), None)
            .await
            .expect("event");
        assert!(fresh);
        let (again, fresh) = bus
            .post_event("s", v.clone(), body, Some("k"), None)
            .await
            .expect("event");
        assert!(!fresh);
        assert_eq!(again, a);
        assert!(matches!(
            bus.post_event("s", v.clone(), b"{}", Some("k"), None).await,
            Err(EventError::IdempotencyConflict)
        ));
        let (b, _) = bus
            .post_event("s", v, body, None, None)
            .await
            .expect("event");
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(feed.recv().await.expect("no lag").expect("open").seq, 1);
        assert_eq!(feed.recv().await.expect("no lag").expect("open").seq, 2);
    }
}

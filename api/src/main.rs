use std::net::Ipv4Addr;

use anyhow::Context;
use api::cli::{Cli, Command, KeysCommand};
use clap::Parser;
use signaling::Role;

fn main() -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let cli = Cli::parse();
    // Lines that anonymous bad input can trigger are sampled per call site
    // (api::log_sampling), so a flood of bad offers cannot flood the log.
    let sampling = api::log_sampling::LogSampling::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,str0m=warn,is=warn,dimpl=warn")
            }),
        )
        .with(sampling.clone())
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.spawn(sampling.report_every(api::log_sampling::REPORT_EVERY));
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => {
            let a = *a;
            let workers = a
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let config = api::Config {
                http_addr: a.http_addr,
                http: a.http.to_limits(),
                https: a.https(),
                trusted_proxies: a.trusted_proxies.clone(),
                media_port: a.media_port,
                rtmp_addr: a.rtmp_addr,
                rtmps_addr: a.rtmps_addr,
                rtmp: ingest::RtmpConfig {
                    stall_timeout: std::time::Duration::from_secs(a.rtmp_stall_timeout.max(1)),
                    ..ingest::RtmpConfig::default()
                },
                srt_addr: a.srt_addr,
                srt: ingest::SrtConfig {
                    latency: std::time::Duration::from_millis(a.srt_latency),
                    passphrase: a.srt_passphrase.clone(),
                    ..ingest::SrtConfig::default()
                },
                public_ip: a.public_ip,
                bind_ip: a.bind_ip,
                data_dir: a.data.data_dir,
                database_url: a.data.database_url,
                jwt_secret: a.jwt_secret,
                workers,
                max_sessions: a.max_sessions,
                udp_gso: a.udp_gso,
                pace_viewers: a.pace_viewers,
                twcc_send_history: a.twcc_send_history,
                viewer_estimator: a.viewer_estimator.into(),
                turn: a.turn.to_config(a.public_ip),
                redis_url: a.redis_url,
                redis_prefix: a.redis_prefix,
                chat: signaling::ChatLimits::default(),
                geoip_db: a.geoip_db,
                auth_fail_limits: a.auth_fail.to_limits(),
                rest: api::rest::RestConfig {
                    session_ttl: a.session_ttl,
                    payment_webhook_secret: a.payment_webhook_secret,
                    checkout_url: a.checkout_url,
                    ..Default::default()
                },
                hls: transcoder::HlsConfig {
                    timing: transcoder::Timing {
                        segment_target: a.hls_segment,
                        part_target: a.hls_part,
                        ..transcoder::Timing::default()
                    },
                    ladder: a.hls_ladder.0,
                    audio: if a.hls_audio == "opus" {
                        transcoder::AudioOut::Opus
                    } else {
                        transcoder::AudioOut::default()
                    },
                    ..transcoder::HlsConfig::default()
                },
                vod_retention: a.vod_retention.0,
                media_tokens: api::MediaTokenConfig {
                    ttl: a.hls_token_ttl,
                    key_hex: a.hls_token_key,
                },
                scylla: a.scylla.to_config(),
                webhooks: api::webhooks::WebhookConfig {
                    allow_private: a.webhook_allow_private,
                },
            };
            let listener = tokio::net::TcpListener::bind(config.http_addr)
                .await
                .with_context(|| format!("binding {}", config.http_addr))?;
            let server = api::start(config, listener).await?;
            let addr = server.http_addr();
            let host = if addr.ip().is_unspecified() {
                std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                addr.ip()
            };
            let scheme = if server.is_https() { "https" } else { "http" };
            eprintln!("relaycast listening on {scheme}://{addr}");
            eprintln!(
                "  publish: relaycast keys create NAME, then WHIP to {scheme}://{host}:{}/whip/NAME",
                addr.port()
            );
            eprintln!(
                "  play:    WHEP {scheme}://{host}:{}/whep/NAME",
                addr.port()
            );
            eprintln!(
                "  LL-HLS:  {scheme}://{host}:{}/hls/NAME/index.m3u8",
                addr.port()
            );
            server.run_until_signal().await;
            Ok(())
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    name,
                    private,
                    data,
                },
        } => {
            let (store, _) =
                api::open_data(&data.data_dir, data.database_url.as_deref(), Some("unused"))
                    .await?;
            let key = store.create_key(&name, private.then_some(true)).await?;
            store.close().await;
            println!("{key}");
            Ok(())
        }
        Command::HlsTokenKey {
            jwt_secret,
            data_dir,
        } => {
            let secret = match jwt_secret {
                Some(s) => s,
                None => api::load_or_create_secret(&data_dir)?,
            };
            let key = api::MediaTokenConfig::default().tokens(&secret)?.key_hex();
            println!("{key}");
            Ok(())
        }
        Command::Migrate { data } => {
            let url = api::database_url(&data.data_dir, data.database_url.as_deref());
            if data.database_url.is_none() {
                std::fs::create_dir_all(&data.data_dir)
                    .with_context(|| format!("creating {}", data.data_dir.display()))?;
            }
            let db = signaling::Db::connect(&url)
                .await
                .context("connecting to the database")?;
            db.migrate().await.context("migrating")?;
            db.close().await;
            eprintln!("database migrated ({:?})", db.backend());
            Ok(())
        }
        Command::Turn(t) => {
            anyhow::ensure!(
                t.turn.turn_secret.is_some(),
                "relaycast turn needs --turn-secret (the one your signalling mints credentials with)"
            );
            let mut cfg = t
                .turn
                .to_config(None)
                .context("relaycast turn needs --turn-udp, --turn-tcp or --turn-tls")?;
            cfg.public_ip.get_or_insert_with(api::default_public_ip);
            cfg.auth_fail_limits = t.auth_fail.to_limits();
            let registry = prometheus::Registry::new();
            let metrics =
                turn_server::Metrics::new(&registry).context("registering TURN metrics")?;
            let server = turn_server::TurnServer::start(cfg, metrics).await?;
            eprintln!(
                "relaycast TURN: udp {:?}, tcp {:?}, tls {:?}",
                server.udp_addr(),
                server.tcp_addr(),
                server.tls_addr()
            );
            let metrics_task = match t.metrics_addr {
                Some(addr) => {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("binding --metrics-addr {addr}"))?;
                    eprintln!(
                        "relaycast TURN metrics on http://{}/metrics",
                        listener.local_addr()?
                    );
                    let limits = t.http.to_limits();
                    Some(tokio::spawn(async move {
                        if let Err(e) = api::serve_metrics(listener, registry, limits).await {
                            tracing::error!("metrics listener: {e:#}");
                        }
                    }))
                }
                None => None,
            };
            tokio::signal::ctrl_c().await?;
            if let Some(task) = metrics_task {
                task.abort();
            }
            server.shutdown().await;
            Ok(())
        }
        Command::Token(t) => {
            let role: Role = t.role.parse()?;
            if !role.is_account() && t.stream.is_none() {
                anyhow::bail!("--stream is required for publish and play tokens");
            }
            let subject = t.subject();
            let secret = match t.jwt_secret {
                Some(s) => s,
                None => api::load_or_create_secret(&t.data.data_dir)?,
            };
            let tokens = signaling::Tokens::new(secret.as_bytes());
            let jwt = tokens.issue(
                &subject,
                t.stream.as_deref(),
                role,
                api::unix_now(),
                t.ttl.as_secs(),
            )?;
            println!("{jwt}");
            Ok(())
        }
    }
}

//! Gives the memory an ended LL-HLS stream freed back to the OS.
//!
//! glibc's malloc keeps what is freed in its arenas (one per thread that
//! allocated, up to 8 × cores) and shrinks an arena only from the top of
//! its heap. A stream with the ABR ladder allocates on several threads (the
//! ladder thread: decoder, encoders, scaled pictures, the rungs' samples;
//! tokio workers: the source and audio segment windows), so once the stream
//! ends most of that memory is free but sits below chunks still in use and
//! stays resident: after three 720p streams in a row the server held 65 MiB
//! instead of 36 (`docs/benchmarks.md`, "Memory after a stream ends"). `malloc_trim(0)` walks every
//! arena and returns each free whole page (`MADV_DONTNEED`).
//!
//! The transcoder only says when memory was freed ([`transcoder::Released`]);
//! this process-wide step belongs to the binary, so it lives here. It runs
//! once per notice, off the runtime (it takes each arena's lock in turn).

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Trims after every [`transcoder::Released`] notice until the sender
/// goes away.
pub fn spawn(mut released: broadcast::Receiver<transcoder::Released>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match released.recv().await {
                // A lagged listener still trims: what it missed was freed too.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
            match tokio::task::spawn_blocking(trim).await {
                Ok(returned) => tracing::debug!(returned, "malloc_trim after an ended stream"),
                Err(e) => tracing::warn!("malloc_trim task: {e}"),
            }
        }
    })
}

/// Returns free pages of every malloc arena to the OS; true when some were
/// returned. Does nothing where the allocator is not glibc's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: `malloc_trim` has no preconditions: it takes a byte count (0:
    // keep no extra padding), reads and changes only the allocator's own
    // state under each arena's mutex (glibc documents it MT-Safe), and no
    // Rust object owns the pages it releases: they are free chunks, whose
    // contents nobody may read before malloc hands them out again, zeroed
    // or not. It is called from an ordinary thread, not a signal handler.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Returns free pages of every malloc arena to the OS; true when some were
/// returned. Does nothing where the allocator is not glibc's.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trims_on_each_notice_and_ends_with_the_sender() {
        let (tx, rx) = broadcast::channel(4);
        let task = spawn(rx);
        tx.send(transcoder::Released::Ladder { stream: "s".into() })
            .expect("the trim task listens");
        drop(tx);
        // Ends once the notice is handled and the sender is gone.
        tokio::time::timeout(std::time::Duration::from_secs(30), task)
            .await
            .expect("the task ends when the sender goes away")
            .expect("the task does not panic");
    }

    #[test]
    fn trim_runs_beside_threads_that_allocate() {
        let churn = std::thread::spawn(|| {
            for i in 0..200usize {
                let v = vec![i as u8; 256 << 10];
                assert_eq!(v[v.len() - 1], i as u8);
            }
        });
        for _ in 0..20 {
            trim();
        }
        churn.join().expect("the allocating thread ends normally");
    }
}

//! What the local dataplane may hold open at once, sized from what the machine grants.
//!
//! Every probe in flight holds a client socket; every TCP/SCTP server holds its listener and, at
//! any instant, at most the one connection its accept loop is handling (it accepts and closes one
//! at a time); a UDP server holds one socket. A probe wave larger than the descriptor limit ends
//! in `EMFILE`, which says nothing about the dataplane, so the platform keeps one budget for all
//! its sessions:
//!
//! - the soft `RLIMIT_NOFILE` is raised to the hard one (and the hard one as far as root may);
//! - a reserve stays free for what is not counted here: descriptors already open, the `ip` and
//!   `nft` processes' pipes, the namespace file each namespace thread opens, report files;
//! - servers may take at most three quarters of the rest, so probes always keep a quarter; a
//!   session takes every server permit its scenario will ever need when it opens (no session
//!   holds some while waiting for more, so sessions never deadlock on each other);
//! - each probe takes one permit while its socket exists; namespace threads are bounded too.
//!
//! Ephemeral ports are per network namespace: a source pod probes its cells in chunks of at most
//! [`CHUNK`], one chunk at a time, far below the 28,000 ports of the default range, and the
//! servers (not the clients) close first, so TIME_WAIT never holds the clients' ports.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests of one source pod whose sockets are created together (one namespace thread).
pub const CHUNK: usize = 512;

/// Namespace threads at once (each is short-lived: it creates sockets and ends).
const THREADS: usize = 32;

/// Descriptors kept out of the budget (see the module docs), besides those already open.
const RESERVE: u64 = 1024;

#[derive(Debug, Clone)]
pub struct Budget {
    fds: Arc<Semaphore>,
    /// Server permits still grantable (at most three quarters of the budget).
    server_room: Arc<std::sync::Mutex<usize>>,
    threads: Arc<Semaphore>,
    pub limits: Limits,
}

/// The figures the budget was sized from (recorded in the report's environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The soft descriptor limit after raising it.
    pub nofile: u64,
    /// Descriptors open when the platform started.
    pub open: u64,
    /// Descriptors probes and servers may use together.
    pub usable: usize,
    /// Of those, what servers may take.
    pub servers: usize,
}

impl Limits {
    pub fn from(nofile: u64, open: u64) -> Limits {
        let usable = nofile.saturating_sub(open + RESERVE).max(64);
        let usable = usize::try_from(usable).unwrap_or(usize::MAX >> 4);
        Limits {
            nofile,
            open,
            usable,
            servers: usable / 4 * 3,
        }
    }
}

/// Permits held by one server (its listener and the connection it is handling).
#[derive(Debug)]
pub struct ServerPermits {
    _fds: OwnedSemaphorePermit,
    room: Arc<std::sync::Mutex<usize>>,
    n: usize,
}

impl Drop for ServerPermits {
    fn drop(&mut self) {
        *self.room.lock().unwrap_or_else(|p| p.into_inner()) += self.n;
    }
}

impl ServerPermits {
    /// Splits off the permits of one server of `n` descriptors (`None` when fewer are held).
    pub fn split(&mut self, n: usize) -> Option<ServerPermits> {
        let fds = self._fds.split(n)?;
        self.n -= n;
        Some(ServerPermits {
            _fds: fds,
            room: Arc::clone(&self.room),
            n,
        })
    }
}

/// The budget for `n` servers cannot be granted at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooBig {
    pub wanted: usize,
    pub allowed: usize,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            fds: Arc::new(Semaphore::new(limits.usable)),
            server_room: Arc::new(std::sync::Mutex::new(limits.servers)),
            threads: Arc::new(Semaphore::new(THREADS)),
            limits,
        }
    }

    /// Sized from this process: raises the descriptor limit, counts what is open.
    pub fn for_this_process() -> Budget {
        raise_nofile_limit();
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        let open = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(64);
        Budget::new(Limits::from(nofile, open))
    }

    /// Permits for `n` server descriptors, waiting while other sessions hold them. Fails at once
    /// when `n` could never be granted.
    pub async fn servers(&self, n: usize) -> Result<ServerPermits, TooBig> {
        if n > self.limits.servers {
            return Err(TooBig {
                wanted: n,
                allowed: self.limits.servers,
            });
        }
        loop {
            {
                let mut room = self.server_room.lock().unwrap_or_else(|p| p.into_inner());
                if *room >= n {
                    *room -= n;
                    break;
                }
            }
            // Room frees up only when a session tears down: poll gently.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let fds = Arc::clone(&self.fds)
            .acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
            .await
            .expect("the budget's semaphore is never closed");
        Ok(ServerPermits {
            _fds: fds,
            room: Arc::clone(&self.server_room),
            n,
        })
    }

    /// Permits for `n` server descriptors if they are free now (servers started on demand).
    pub fn try_servers(&self, n: usize) -> Option<ServerPermits> {
        let mut room = self.server_room.lock().unwrap_or_else(|p| p.into_inner());
        if *room < n {
            return None;
        }
        let fds = Arc::clone(&self.fds)
            .try_acquire_many_owned(u32::try_from(n).ok()?)
            .ok()?;
        *room -= n;
        Some(ServerPermits {
            _fds: fds,
            room: Arc::clone(&self.server_room),
            n,
        })
    }

    /// Permits for `n` probe sockets (at most the probes' share: callers chunk below it).
    pub async fn probes(&self, n: usize) -> OwnedSemaphorePermit {
        let n = n.min(self.probe_share()).max(1);
        Arc::clone(&self.fds)
            .acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
            .await
            .expect("the budget's semaphore is never closed")
    }

    /// Probe sockets one chunk may ask for at once: a fraction of the probes' share, so many
    /// sources make progress together.
    pub fn chunk(&self) -> usize {
        (self.probe_share() / 8).clamp(1, CHUNK)
    }

    fn probe_share(&self) -> usize {
        self.limits.usable - self.limits.servers
    }

    /// A slot for one namespace thread.
    pub async fn thread(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.threads)
            .acquire_owned()
            .await
            .expect("the thread semaphore is never closed")
    }
}

/// Raise the soft descriptor limit to the hard one, and the hard one as far as the kernel
/// allows root (without CAP_SYS_RESOURCE only the first works).
fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const WANTED: u64 = 1 << 20;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let target = WANTED.min(nr_open).max(hard);
    if soft < target && setrlimit(Resource::RLIMIT_NOFILE, target, target).is_err() && soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_keep_a_reserve_and_a_share_for_probes() {
        let l = Limits::from(20_000, 30);
        assert_eq!(l.usable, 20_000 - 30 - 1024);
        assert_eq!(l.servers, l.usable / 4 * 3);
        // A tiny limit still leaves something to probe with.
        assert_eq!(Limits::from(100, 90).usable, 64);
    }

    #[tokio::test]
    async fn servers_never_take_the_probes_share() {
        let b = Budget::new(Limits::from(1024 + 10 + 400, 10));
        assert_eq!(b.limits.usable, 400);
        assert_eq!(b.limits.servers, 300);
        assert_eq!(
            b.servers(301).await.err(),
            Some(TooBig {
                wanted: 301,
                allowed: 300
            })
        );
        let mut held = b.servers(300).await.expect("fits");
        assert!(b.try_servers(1).is_none(), "no server room left");
        // Probes still get their quarter.
        let p = b.probes(100).await;
        assert_eq!(p.num_permits(), 100);
        // Splitting and dropping a server gives its room back.
        let one = held.split(2).expect("split");
        drop(one);
        assert!(b.try_servers(2).is_some());
        assert!(b.chunk() >= 1 && b.chunk() <= CHUNK);
    }
}

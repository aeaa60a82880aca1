//! The seam between moving files and running commands: [`Remote`] runs one command in the
//! target container. `k8s::exec` implements it over `pods/exec`; tests implement it with a local
//! process, so the exact remote scripts are exercised for real without a cluster.

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};

/// Bytes fed to the remote command's stdin. The remote side never waits for end-of-file: every
/// script we send reads exactly `len` bytes (`head -c`), so the same stream works on the v4
/// exec protocol, which cannot signal the end of stdin without closing the connection.
pub struct Stdin<'a> {
    /// Exact number of bytes `reader` yields.
    pub len: u64,
    /// The bytes.
    pub reader: Box<dyn AsyncRead + Unpin + Send + 'a>,
}

/// Runs one command in the container that holds the files.
pub trait Remote {
    /// Run `argv` (no shell is added: pass `["sh", "-c", script, ...]` for one), feed it `stdin`
    /// if given, copy its stdout and stderr into the given writers as they arrive, and return its
    /// exit code once it has ended and all output is written.
    ///
    /// # Errors
    /// When the command could not be started or its connection broke before the exit code
    /// arrived. A non-zero exit is not an error here: it is the returned code.
    fn run(
        &self,
        argv: Vec<String>,
        stdin: Option<Stdin<'_>>,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
        stderr: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> impl Future<Output = anyhow::Result<i32>> + Send;
}

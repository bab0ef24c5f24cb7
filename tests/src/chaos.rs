//! A TCP proxy a test can cut and restore: it stands between a coordinator and the shared
//! PostgreSQL server and plays a stopped server (cut: every open connection closed, new ones
//! refused) without stopping the real one, which other tests keep using.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    net::{TcpSocket, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct ChaosProxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl ChaosProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = listen("127.0.0.1:0".parse().unwrap());
        let addr = listener.local_addr().expect("proxy address");
        drop(listener);
        let (up, _) = watch::channel(true);
        let accept = tokio::spawn(accept_loop(addr, upstream, up.subscribe()));
        let proxy = Self { addr, up, accept };
        proxy.wait_listening(true).await;
        proxy
    }

    /// Closes every proxied connection and refuses new ones (the port stops listening).
    pub async fn cut(&self) {
        self.up.send_replace(false);
        self.wait_listening(false).await;
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        self.up.send_replace(true);
        self.wait_listening(true).await;
    }

    async fn wait_listening(&self, listening: bool) {
        let what = if listening { "listen" } else { "refuse" };
        crate::eventually(
            &format!("the proxy to {what} on {}", self.addr),
            Duration::from_secs(5),
            async || (TcpStream::connect(self.addr).await.is_ok() == listening).then_some(()),
        )
        .await;
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.up.send_replace(false);
        self.accept.abort();
    }
}

fn listen(addr: SocketAddr) -> tokio::net::TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    // The same port again right after a cut.
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind the proxy port");
    socket.listen(128).expect("listen")
}

async fn accept_loop(addr: SocketAddr, upstream: SocketAddr, mut up: watch::Receiver<bool>) {
    loop {
        if up.wait_for(|up| *up).await.is_err() {
            return;
        }
        let listener = listen(addr);
        let mut cut = up.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((client, _)) = accepted {
                        tokio::spawn(forward(client, upstream, up.clone()));
                    }
                }
                _ = cut.wait_for(|up| !*up) => break,
            }
        }
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        // Dropping both ends closes the connection, as a stopped server would.
        _ = up.wait_for(|up| !*up) => {}
    }
}

//! [`Net`] on turmoil: simulated TCP between simulated hosts, and a simulated wall clock (turmoil's epoch plus the
//! simulated time), so the production drivers run unchanged inside the simulation.

use std::io;
use std::net::SocketAddr;

use flare_runtime::net::{Listener, Net};

/// turmoil's network and clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimNet;

/// A turmoil listener.
pub struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for SimNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = SimListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<SimListener> {
        Ok(SimListener(turmoil::net::TcpListener::bind(addr).await?))
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect((host, port)).await
    }

    fn unix_time(&self) -> u64 {
        turmoil::since_epoch().map_or(0, |d| d.as_secs())
    }
}

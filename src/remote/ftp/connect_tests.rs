use std::net::IpAddr;

use super::*;

#[test]
fn data_connections_only_go_to_the_control_peer() {
    let peer: IpAddr = "203.0.113.7".parse().unwrap();
    assert_eq!(data_ip(peer, peer), Ok(peer));
    assert_eq!(data_ip("10.0.0.5".parse().unwrap(), peer), Ok(peer), "NAT: private becomes peer");
    assert_eq!(data_ip("0.0.0.0".parse().unwrap(), peer), Ok(peer));
    assert!(data_ip("198.51.100.9".parse().unwrap(), peer).is_err(), "third host refused");
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(data_ip("192.168.1.2".parse().unwrap(), local), Ok(local));
}

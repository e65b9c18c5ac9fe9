//! nfnetlink_log (NFLOG) messages and the logged IP packet inside, down to a DNS query's name (pure).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// The netlink protocol of netfilter's subsystems.
pub const NETLINK_NETFILTER: i32 = 12;
/// The nfnetlink subsystem of nfnetlink_log.
pub const NFNL_SUBSYS_ULOG: u8 = 4;
/// A logged packet, kernel to user space.
pub const NFULNL_MSG_PACKET: u8 = 0;
/// A configuration request, user space to kernel.
pub const NFULNL_MSG_CONFIG: u8 = 1;

/// struct nfulnl_msg_packet_hdr (hw_protocol, hook).
pub const NFULA_PACKET_HDR: u16 = 1;
/// The packet mark, be32.
pub const NFULA_MARK: u16 = 2;
/// struct nfulnl_msg_packet_timestamp (sec, usec; be64 each).
pub const NFULA_TIMESTAMP: u16 = 3;
/// Input interface index, be32.
pub const NFULA_IFINDEX_INDEV: u16 = 4;
/// Output interface index, be32.
pub const NFULA_IFINDEX_OUTDEV: u16 = 5;
/// struct nfulnl_msg_packet_hw (hardware address).
pub const NFULA_HWADDR: u16 = 8;
/// The packet, from its network header.
pub const NFULA_PAYLOAD: u16 = 9;
/// The rule's log prefix, NUL-terminated.
pub const NFULA_PREFIX: u16 = 10;
/// The sending socket's UID, be32.
pub const NFULA_UID: u16 = 11;
/// The instance-local sequence number, be32.
pub const NFULA_SEQ: u16 = 12;
/// The global sequence number, be32.
pub const NFULA_SEQ_GLOBAL: u16 = 13;
/// The sending socket's GID, be32.
pub const NFULA_GID: u16 = 14;

/// struct nfulnl_msg_config_cmd (u8 command).
pub const NFULA_CFG_CMD: u16 = 1;
/// struct nfulnl_msg_config_mode (be32 copy_range, u8 copy_mode, u8 pad).
pub const NFULA_CFG_MODE: u16 = 2;
/// Netlink buffer size in bytes, be32.
pub const NFULA_CFG_NLBUFSIZ: u16 = 3;
/// Flush timeout in 1/100 s, be32.
pub const NFULA_CFG_TIMEOUT: u16 = 4;
/// Packets queued before a flush, be32.
pub const NFULA_CFG_QTHRESH: u16 = 5;
/// NFULNL_CFG_F_* flags, be16.
pub const NFULA_CFG_FLAGS: u16 = 6;

/// Bind the socket to the group.
pub const NFULNL_CFG_CMD_BIND: u8 = 1;
/// Unbind the socket from the group.
pub const NFULNL_CFG_CMD_UNBIND: u8 = 2;
/// Legacy: bind the protocol family (a no-op on current kernels).
pub const NFULNL_CFG_CMD_PF_BIND: u8 = 3;
/// Legacy: unbind the protocol family (a no-op on current kernels).
pub const NFULNL_CFG_CMD_PF_UNBIND: u8 = 4;
/// Copy mode: metadata and packet.
pub const NFULNL_COPY_PACKET: u8 = 2;
/// Flag: send NFULA_SEQ.
pub const NFULNL_CFG_F_SEQ: u16 = 1;
/// Flag: send NFULA_SEQ_GLOBAL.
pub const NFULNL_CFG_F_SEQ_GLOBAL: u16 = 2;
/// Flag: send conntrack information.
pub const NFULNL_CFG_F_CONNTRACK: u16 = 4;

/// Netlink message type of an error or ACK (struct nlmsgerr).
pub const NLMSG_ERROR: u16 = 2;
/// Netlink message type ending a multipart batch.
pub const NLMSG_DONE: u16 = 3;
/// Netlink flag: a request.
pub const NLM_F_REQUEST: u16 = 1;
/// Netlink flag: ask for an ACK.
pub const NLM_F_ACK: u16 = 4;

/// The nlmsg_type of a logged packet.
pub const PACKET_MESSAGE_TYPE: u16 = ((NFNL_SUBSYS_ULOG as u16) << 8) | NFULNL_MSG_PACKET as u16;
/// The nlmsg_type of a configuration request.
pub const CONFIG_MESSAGE_TYPE: u16 = ((NFNL_SUBSYS_ULOG as u16) << 8) | NFULNL_MSG_CONFIG as u16;

const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLMSG_HEADER_LEN: usize = 16;
const NLA_HEADER_LEN: usize = 4;
const NFGENMSG_LEN: usize = 4;
const MAX_EXTENSION_HEADERS: usize = 8;
const MAX_POINTER_JUMPS: usize = 4;
const DNS_HEADER_LEN: usize = 12;
const DNS_PORT: u16 = 53;

/// One NFULNL_MSG_PACKET message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged<'a> {
    /// nfgenmsg.nfgen_family (AF_INET 2, AF_INET6 10, NFPROTO_INET 1, ...).
    pub family: u8,
    /// nfgenmsg.res_id: the NFLOG group.
    pub group: u16,
    /// NFULA_PREFIX without its NUL; None if absent or not UTF-8.
    pub prefix: Option<&'a str>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// NFULA_SEQ, the instance's local sequence number.
    pub seq: Option<u32>,
    /// NFULA_TIMESTAMP: (sec, usec).
    pub timestamp: Option<(u64, u64)>,
    /// NFULA_PAYLOAD: the packet from its network header; empty if absent.
    pub payload: &'a [u8],
}

/// What one recv() buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Packet(Logged<'a>),
    /// NLMSG_ERROR with its (negative) errno; 0 is an ACK.
    Error(i32),
    /// Any other message type (ignored by callers), with its nlmsg_type; also a packet or
    /// error message too short for its fixed header.
    Other(u16),
}

fn align4(length: usize) -> usize {
    length.saturating_add(3) & !3
}

fn ne_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn ne_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be_u32_exact(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Iterate the netlink messages in one datagram (native-endian nlmsghdr, 4-byte aligned;
/// stop at a truncated header or length). Malformed attributes never panic.
pub fn messages(buffer: &[u8]) -> Vec<Message<'_>> {
    let mut found = Vec::new();
    let mut rest = buffer;
    while rest.len() >= NLMSG_HEADER_LEN {
        let (Some(length), Some(kind)) = (ne_u32(rest, 0), ne_u16(rest, 4)) else {
            break;
        };
        let length = length as usize;
        if length < NLMSG_HEADER_LEN || length > rest.len() {
            break;
        }
        let body = &rest[NLMSG_HEADER_LEN..length];
        found.push(message(kind, body));
        rest = &rest[align4(length).min(rest.len())..];
    }
    found
}

fn message(kind: u16, body: &[u8]) -> Message<'_> {
    match kind {
        NLMSG_ERROR => match body.get(..4) {
            Some(error) => {
                Message::Error(i32::from_ne_bytes([error[0], error[1], error[2], error[3]]))
            }
            None => Message::Other(kind),
        },
        PACKET_MESSAGE_TYPE => match logged(body) {
            Some(packet) => Message::Packet(packet),
            None => Message::Other(kind),
        },
        _ => Message::Other(kind),
    }
}

fn logged(body: &[u8]) -> Option<Logged<'_>> {
    let family = *body.first()?;
    let group = be_u16(body, 2)?;
    let mut packet = Logged {
        family,
        group,
        prefix: None,
        uid: None,
        gid: None,
        seq: None,
        timestamp: None,
        payload: &[],
    };
    for (kind, value) in attributes(body.get(NFGENMSG_LEN..)?) {
        match kind {
            NFULA_PREFIX => {
                let text = value.split(|&b| b == 0).next().unwrap_or(value);
                packet.prefix = std::str::from_utf8(text).ok();
            }
            NFULA_UID => packet.uid = be_u32_exact(value),
            NFULA_GID => packet.gid = be_u32_exact(value),
            NFULA_SEQ => packet.seq = be_u32_exact(value),
            NFULA_TIMESTAMP if value.len() == 16 => {
                packet.timestamp = Some((be_u64(value, 0)?, be_u64(value, 8)?));
            }
            NFULA_PAYLOAD => packet.payload = value,
            _ => {}
        }
    }
    Some(packet)
}

/// The (type without flags, value) of each attribute; stops at a malformed one.
fn attributes(mut rest: &[u8]) -> Vec<(u16, &[u8])> {
    let mut found = Vec::new();
    while rest.len() >= NLA_HEADER_LEN {
        let (Some(length), Some(kind)) = (ne_u16(rest, 0), ne_u16(rest, 2)) else {
            break;
        };
        let length = length as usize;
        if length < NLA_HEADER_LEN || length > rest.len() {
            break;
        }
        found.push((
            kind & !(NLA_F_NESTED | NLA_F_NET_BYTEORDER),
            &rest[NLA_HEADER_LEN..length],
        ));
        rest = &rest[align4(length).min(rest.len())..];
    }
    found
}

/// One attribute of a config request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigAttribute {
    /// NFULA_CFG_CMD: one NFULNL_CFG_CMD_* byte.
    Command(u8),
    /// NFULA_CFG_MODE: bytes to copy and the NFULNL_COPY_* mode.
    Mode { copy_range: u32, copy_mode: u8 },
    /// NFULA_CFG_NLBUFSIZ in bytes.
    BufferSize(u32),
    /// NFULA_CFG_TIMEOUT in 1/100 s.
    Timeout(u32),
    /// NFULA_CFG_QTHRESH in packets.
    QueueThreshold(u32),
    /// NFULA_CFG_FLAGS: NFULNL_CFG_F_* bits.
    Flags(u16),
}

impl ConfigAttribute {
    fn kind_and_value(&self) -> (u16, Vec<u8>) {
        match *self {
            ConfigAttribute::Command(command) => (NFULA_CFG_CMD, vec![command]),
            ConfigAttribute::Mode {
                copy_range,
                copy_mode,
            } => {
                let mut value = copy_range.to_be_bytes().to_vec();
                value.extend([copy_mode, 0]);
                (NFULA_CFG_MODE, value)
            }
            ConfigAttribute::BufferSize(size) => (NFULA_CFG_NLBUFSIZ, size.to_be_bytes().to_vec()),
            ConfigAttribute::Timeout(timeout) => {
                (NFULA_CFG_TIMEOUT, timeout.to_be_bytes().to_vec())
            }
            ConfigAttribute::QueueThreshold(count) => {
                (NFULA_CFG_QTHRESH, count.to_be_bytes().to_vec())
            }
            ConfigAttribute::Flags(flags) => (NFULA_CFG_FLAGS, flags.to_be_bytes().to_vec()),
        }
    }
}

/// One nfnetlink_log config request (NFULNL_MSG_CONFIG), ready to send: nlmsghdr (native
/// endian, flags NLM_F_REQUEST|NLM_F_ACK, the given seq, pid 0), nfgenmsg (family, version 0,
/// res_id = group big endian), then the attributes, each padded to 4 bytes.
pub fn config_request(group: u16, family: u8, seq: u32, attributes: &[ConfigAttribute]) -> Vec<u8> {
    let mut body = vec![family, 0];
    body.extend(group.to_be_bytes());
    for attribute in attributes {
        let (kind, value) = attribute.kind_and_value();
        let length = (NLA_HEADER_LEN + value.len()) as u16;
        body.extend(length.to_ne_bytes());
        body.extend(kind.to_ne_bytes());
        body.extend(&value);
        body.resize(align4(body.len()), 0);
    }
    let length = (NLMSG_HEADER_LEN + body.len()) as u32;
    let mut request = Vec::with_capacity(length as usize);
    request.extend(length.to_ne_bytes());
    request.extend(CONFIG_MESSAGE_TYPE.to_ne_bytes());
    request.extend((NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    request.extend(seq.to_ne_bytes());
    request.extend(0u32.to_ne_bytes());
    request.extend(body);
    request
}

/// Layer 4 protocol of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Other(u8),
}

impl Protocol {
    /// From the IP protocol / next header number.
    pub fn from_number(number: u8) -> Protocol {
        match number {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            1 => Protocol::Icmp,
            58 => Protocol::Icmpv6,
            other => Protocol::Other(other),
        }
    }

    /// "tcp", "udp", "icmp", "icmpv6", or the number as text.
    pub fn name(&self) -> String {
        match self {
            Protocol::Tcp => "tcp".to_string(),
            Protocol::Udp => "udp".to_string(),
            Protocol::Icmp => "icmp".to_string(),
            Protocol::Icmpv6 => "icmpv6".to_string(),
            Protocol::Other(number) => number.to_string(),
        }
    }
}

/// What the logged packet was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub protocol: Protocol,
    pub source: IpAddr,
    pub destination: IpAddr,
    /// Destination port for TCP and UDP.
    pub port: Option<u16>,
    /// The first question's name of a DNS query to port 53 (see `dns_question`).
    pub dns_name: Option<String>,
    /// The DNS query type (1 A, 28 AAAA, ...), when dns_name is Some.
    pub dns_type: Option<u16>,
}

/// Parse an IPv4 or IPv6 packet (by the version nibble). A non-first fragment has no ports;
/// IPv6 extension headers (0, 43, 44, 60; at most 8) are walked, and one that cannot be walked
/// leaves its number as the protocol. None for anything that is not a whole IP header.
pub fn parse_packet(packet: &[u8]) -> Option<Attempt> {
    let (number, source, destination, transport) = match packet.first()? >> 4 {
        4 => ipv4(packet)?,
        6 => ipv6(packet)?,
        _ => return None,
    };
    let mut attempt = Attempt {
        protocol: Protocol::from_number(number),
        source,
        destination,
        port: None,
        dns_name: None,
        dns_type: None,
    };
    let Some(transport) = transport else {
        return Some(attempt);
    };
    if !matches!(attempt.protocol, Protocol::Tcp | Protocol::Udp) {
        return Some(attempt);
    }
    attempt.port = be_u16(transport, 2);
    if attempt.port == Some(DNS_PORT) {
        let query = match attempt.protocol {
            Protocol::Udp => udp_payload(transport),
            _ => tcp_dns_message(transport),
        };
        if let Some((name, kind)) = query.and_then(dns_question) {
            attempt.dns_name = Some(name);
            attempt.dns_type = Some(kind);
        }
    }
    Some(attempt)
}

/// The bytes from `start`, cut at `declared` bytes in all when that is plausible (a captured
/// packet may be shorter; a zero or too small length, as with GSO, is ignored).
fn within(packet: &[u8], start: usize, declared: usize) -> &[u8] {
    let end = if declared >= start {
        declared.min(packet.len())
    } else {
        packet.len()
    };
    &packet[start.min(end)..end]
}

type IpParts<'a> = (u8, IpAddr, IpAddr, Option<&'a [u8]>);

/// (protocol, source, destination, the bytes from the transport header on unless a later fragment).
fn ipv4(packet: &[u8]) -> Option<IpParts<'_>> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    if header_len < 20 || packet.len() < header_len {
        return None;
    }
    let source: [u8; 4] = packet[12..16].try_into().ok()?;
    let destination: [u8; 4] = packet[16..20].try_into().ok()?;
    let fragment_offset = be_u16(packet, 6)? & 0x1fff;
    let total = usize::from(be_u16(packet, 2)?);
    let transport = (fragment_offset == 0).then(|| within(packet, header_len, total));
    Some((
        packet[9],
        IpAddr::V4(Ipv4Addr::from(source)),
        IpAddr::V4(Ipv4Addr::from(destination)),
        transport,
    ))
}

fn ipv6(packet: &[u8]) -> Option<IpParts<'_>> {
    if packet.len() < 40 {
        return None;
    }
    let source: [u8; 16] = packet[8..24].try_into().ok()?;
    let destination: [u8; 16] = packet[24..40].try_into().ok()?;
    let payload_len = usize::from(be_u16(packet, 4)?);
    let declared = if payload_len == 0 {
        0
    } else {
        40 + payload_len
    };
    let mut rest = within(packet, 40, declared);
    let mut next = packet[6];
    let mut transport = None;
    for _ in 0..=MAX_EXTENSION_HEADERS {
        match next {
            0 | 43 | 60 => {
                let Some(&length) = rest.get(1) else { break };
                let length = (usize::from(length) + 1) * 8;
                if rest.len() < length {
                    break;
                }
                next = rest[0];
                rest = &rest[length..];
            }
            44 => {
                let Some(offset) = be_u16(rest, 2) else { break };
                next = rest[0];
                if offset >> 3 != 0 {
                    break;
                }
                rest = &rest[8.min(rest.len())..];
            }
            _ => {
                transport = Some(rest);
                break;
            }
        }
    }
    Some((
        next,
        IpAddr::V6(Ipv6Addr::from(source)),
        IpAddr::V6(Ipv6Addr::from(destination)),
        transport,
    ))
}

fn udp_payload(datagram: &[u8]) -> Option<&[u8]> {
    let declared = usize::from(be_u16(datagram, 4)?);
    let payload = within(datagram, 8, declared);
    (datagram.len() >= 8).then_some(payload)
}

/// The DNS message after a TCP segment's 2-byte length prefix (cut to that length).
fn tcp_dns_message(segment: &[u8]) -> Option<&[u8]> {
    let header_len = usize::from(segment.get(12)? >> 4) * 4;
    if header_len < 20 {
        return None;
    }
    let payload = segment.get(header_len..)?;
    let declared = usize::from(be_u16(payload, 0)?);
    Some(within(payload, 2, declared + 2))
}

/// The DNS question name and type of a DNS query (QR bit 0, QDCOUNT >= 1): the name
/// lower-cased, labels joined by '.', no trailing dot ("." for the root), bytes outside
/// printable ASCII as \DDD and a literal '.' or '\' escaped with '\' (as dig writes them).
/// Labels up to 63 bytes, the name up to 255. None when malformed; as the question follows the
/// header, a compression pointer in it can only point into the header or forwards: refused.
pub fn dns_question(message: &[u8]) -> Option<(String, u16)> {
    if message.len() < DNS_HEADER_LEN || message[2] & 0x80 != 0 || be_u16(message, 4)? == 0 {
        return None;
    }
    let (name, end) = name_at(message, DNS_HEADER_LEN)?;
    let kind = be_u16(message, end)?;
    be_u16(message, end + 2)?;
    Some((name, kind))
}

/// The name starting at `start` and where it ends in place. A compression pointer must point
/// after the header and before everything read so far (so never loops), at most 4 times.
fn name_at(message: &[u8], start: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut wire_length = 1;
    let mut at = start;
    let mut lowest = start;
    let mut end = None;
    let mut jumps = 0;
    loop {
        let length = *message.get(at)?;
        match length & 0xc0 {
            0x00 if length == 0 => break,
            0x00 => {
                let label = message.get(at + 1..at + 1 + usize::from(length))?;
                wire_length += 1 + label.len();
                if wire_length > 255 {
                    return None;
                }
                if !name.is_empty() {
                    name.push('.');
                }
                escape_label(label, &mut name);
                at += 1 + label.len();
            }
            0xc0 => {
                let target = usize::from(be_u16(message, at)? & 0x3fff);
                jumps += 1;
                if jumps > MAX_POINTER_JUMPS || target < DNS_HEADER_LEN || target >= lowest {
                    return None;
                }
                end.get_or_insert(at + 2);
                lowest = target;
                at = target;
            }
            _ => return None,
        }
    }
    if name.is_empty() {
        name.push('.');
    }
    Some((name, end.unwrap_or(at + 1)))
}

fn escape_label(label: &[u8], name: &mut String) {
    for &byte in label {
        match byte.to_ascii_lowercase() {
            b'.' => name.push_str("\\."),
            b'\\' => name.push_str("\\\\"),
            printable @ 0x21..=0x7e => name.push(char::from(printable)),
            other => name.push_str(&format!("\\{other:03}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An NFULNL_MSG_PACKET message with these attributes (type, value).
    fn packet_message(group: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![2, 0];
        body.extend(group.to_be_bytes());
        for (kind, value) in attributes {
            body.extend(((NLA_HEADER_LEN + value.len()) as u16).to_ne_bytes());
            body.extend(kind.to_ne_bytes());
            body.extend(*value);
            body.resize(align4(body.len()), 0);
        }
        netlink(PACKET_MESSAGE_TYPE, &body)
    }

    fn netlink(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut message = Vec::new();
        message.extend(((NLMSG_HEADER_LEN + body.len()) as u32).to_ne_bytes());
        message.extend(kind.to_ne_bytes());
        message.extend(0u16.to_ne_bytes());
        message.extend(7u32.to_ne_bytes());
        message.extend(0u32.to_ne_bytes());
        message.extend(body);
        message.resize(align4(message.len()), 0);
        message
    }

    fn ack(error: i32) -> Vec<u8> {
        let mut body = error.to_ne_bytes().to_vec();
        body.extend([0; NLMSG_HEADER_LEN]);
        netlink(NLMSG_ERROR, &body)
    }

    fn ipv4(protocol: u8, fragment: u16, transport: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x45, 0];
        packet.extend(((20 + transport.len()) as u16).to_be_bytes());
        packet.extend([0x12, 0x34]);
        packet.extend(fragment.to_be_bytes());
        packet.extend([64, protocol, 0, 0]);
        packet.extend([192, 0, 2, 10]);
        packet.extend([192, 0, 2, 1]);
        packet.extend(transport);
        packet
    }

    fn tcp(port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut segment = 40000u16.to_be_bytes().to_vec();
        segment.extend(port.to_be_bytes());
        segment.extend([0, 0, 0, 1, 0, 0, 0, 0]);
        segment.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        segment.extend(payload);
        segment
    }

    fn udp(port: u16, payload: &[u8]) -> Vec<u8> {
        let mut datagram = 40000u16.to_be_bytes().to_vec();
        datagram.extend(port.to_be_bytes());
        datagram.extend(((8 + payload.len()) as u16).to_be_bytes());
        datagram.extend([0, 0]);
        datagram.extend(payload);
        datagram
    }

    /// A DNS query: header, then `name` as wire labels (already encoded), type, class IN.
    fn dns_query(wire_name: &[u8], kind: u16) -> Vec<u8> {
        let mut message = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        message.extend(wire_name);
        message.extend(kind.to_be_bytes());
        message.extend(1u16.to_be_bytes());
        message
    }

    fn labels(name: &str) -> Vec<u8> {
        let mut wire = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            wire.push(label.len() as u8);
            wire.extend(label.as_bytes());
        }
        wire.push(0);
        wire
    }

    fn syn_message() -> Vec<u8> {
        let packet = ipv4(6, 0x4000, &tcp(443, 0x02, &[]));
        let mut timestamp = 1_700_000_000u64.to_be_bytes().to_vec();
        timestamp.extend(250_000u64.to_be_bytes());
        packet_message(
            42,
            &[
                (NFULA_PACKET_HDR, &[0x08, 0x00, 3, 0]),
                (NFULA_TIMESTAMP, &timestamp),
                (NFULA_PREFIX, b"pipelock-containment blocked: \0"),
                (NFULA_UID, &1001u32.to_be_bytes()),
                (NFULA_GID, &1002u32.to_be_bytes()),
                (NFULA_SEQ, &5u32.to_be_bytes()),
                (NFULA_PAYLOAD | NLA_F_NET_BYTEORDER, &packet),
            ],
        )
    }

    #[test]
    fn ipv4_tcp_syn_with_prefix_uid_and_seq() {
        let buffer = syn_message();
        let found = messages(&buffer);
        let [Message::Packet(logged)] = found.as_slice() else {
            panic!("{found:?}");
        };
        assert_eq!(logged.family, 2);
        assert_eq!(logged.group, 42);
        assert_eq!(logged.prefix, Some("pipelock-containment blocked: "));
        assert_eq!(logged.uid, Some(1001));
        assert_eq!(logged.gid, Some(1002));
        assert_eq!(logged.seq, Some(5));
        assert_eq!(logged.timestamp, Some((1_700_000_000, 250_000)));
        assert_eq!(
            parse_packet(logged.payload),
            Some(Attempt {
                protocol: Protocol::Tcp,
                source: "192.0.2.10".parse().unwrap(),
                destination: "192.0.2.1".parse().unwrap(),
                port: Some(443),
                dns_name: None,
                dns_type: None,
            })
        );
    }

    #[test]
    fn ipv6_udp_dns_query_through_a_hop_by_hop_header() {
        let datagram = udp(53, &dns_query(&labels("Exfil-123.Example."), 28));
        let mut packet = vec![0x60, 0, 0, 0];
        packet.extend(((8 + datagram.len()) as u16).to_be_bytes());
        packet.extend([0, 64]);
        packet.extend("2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
        packet.extend("2001:db8::53".parse::<Ipv6Addr>().unwrap().octets());
        packet.extend([17, 0, 1, 4, 0, 0, 0, 0]);
        packet.extend(&datagram);
        let buffer = packet_message(3, &[(NFULA_PAYLOAD, &packet)]);
        let found = messages(&buffer);
        let [Message::Packet(logged)] = found.as_slice() else {
            panic!("{found:?}");
        };
        assert_eq!(logged.prefix, None);
        assert_eq!(logged.uid, None);
        let attempt = parse_packet(logged.payload).unwrap();
        assert_eq!(attempt.protocol, Protocol::Udp);
        assert_eq!(attempt.source, "2001:db8::10".parse::<IpAddr>().unwrap());
        assert_eq!(
            attempt.destination,
            "2001:db8::53".parse::<IpAddr>().unwrap()
        );
        assert_eq!(attempt.port, Some(53));
        assert_eq!(attempt.dns_name.as_deref(), Some("exfil-123.example"));
        assert_eq!(attempt.dns_type, Some(28));
    }

    #[test]
    fn tcp_dns_query_after_its_length_prefix() {
        let query = dns_query(&labels("example.org"), 1);
        let mut payload = (query.len() as u16).to_be_bytes().to_vec();
        payload.extend(&query);
        let attempt = parse_packet(&ipv4(6, 0, &tcp(53, 0x18, &payload))).unwrap();
        assert_eq!(attempt.protocol, Protocol::Tcp);
        assert_eq!(attempt.port, Some(53));
        assert_eq!(attempt.dns_name.as_deref(), Some("example.org"));
        assert_eq!(attempt.dns_type, Some(1));
    }

    #[test]
    fn dns_only_to_port_53_and_only_queries() {
        let query = dns_query(&labels("example.org"), 1);
        let elsewhere = parse_packet(&ipv4(17, 0, &udp(5353, &query))).unwrap();
        assert_eq!((elsewhere.port, elsewhere.dns_name), (Some(5353), None));
        let mut response = query.clone();
        response[2] |= 0x80;
        assert_eq!(dns_question(&response), None);
        let syn = parse_packet(&ipv4(6, 0, &tcp(53, 0x02, &[]))).unwrap();
        assert_eq!((syn.port, syn.dns_name), (Some(53), None));
    }

    #[test]
    fn a_later_ipv4_fragment_has_no_port() {
        let attempt = parse_packet(&ipv4(17, 0x00b9, &[0x12; 24])).unwrap();
        assert_eq!(attempt.protocol, Protocol::Udp);
        assert_eq!(attempt.port, None);
        assert_eq!(attempt.dns_name, None);
        let first = parse_packet(&ipv4(17, 0x2000, &udp(123, &[0; 16]))).unwrap();
        assert_eq!(first.port, Some(123));
    }

    #[test]
    fn a_later_ipv6_fragment_has_no_port() {
        let mut packet = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        packet.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain(&[0; 12]));
        packet.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain(&[1; 12]));
        packet.extend([6, 0, 0x05, 0x00, 0, 0, 0, 9]);
        packet.extend([0; 8]);
        let attempt = parse_packet(&packet).unwrap();
        assert_eq!((attempt.protocol, attempt.port), (Protocol::Tcp, None));
    }

    #[test]
    fn icmp_and_other_protocols_have_no_port() {
        let icmp = parse_packet(&ipv4(1, 0, &[8, 0, 0, 0, 0, 1, 0, 1])).unwrap();
        assert_eq!((icmp.protocol, icmp.port), (Protocol::Icmp, None));
        let sctp = parse_packet(&ipv4(132, 0, &[0; 12])).unwrap();
        assert_eq!(sctp.protocol, Protocol::Other(132));
        assert_eq!(sctp.protocol.name(), "132");
        assert_eq!(Protocol::Icmpv6.name(), "icmpv6");
        assert_eq!(serde_json::to_string(&Protocol::Tcp).unwrap(), "\"tcp\"");
        assert_eq!(parse_packet(&[0x45; 19]), None);
        assert_eq!(parse_packet(&[0x50; 60]), None);
    }

    #[test]
    fn several_messages_and_an_ack_in_one_buffer() {
        let mut buffer = syn_message();
        buffer.extend(packet_message(
            42,
            &[(NFULA_PAYLOAD, &ipv4(17, 0, &udp(443, &[1, 2, 3])))],
        ));
        buffer.extend(netlink(NLMSG_DONE, &0i32.to_ne_bytes()));
        buffer.extend(ack(0));
        buffer.extend(ack(-1));
        let found = messages(&buffer);
        assert_eq!(found.len(), 5, "{found:?}");
        let ports: Vec<_> = found
            .iter()
            .filter_map(|m| match m {
                Message::Packet(logged) => parse_packet(logged.payload)?.port,
                _ => None,
            })
            .collect();
        assert_eq!(ports, [443, 443]);
        assert_eq!(found[2], Message::Other(NLMSG_DONE));
        assert_eq!(found[3], Message::Error(0));
        assert_eq!(found[4], Message::Error(-1));
    }

    #[test]
    fn truncated_and_garbage_input_never_panics() {
        let query = dns_query(&labels("a.example"), 1);
        let mut buffer = syn_message();
        buffer.extend(packet_message(
            1,
            &[(NFULA_PAYLOAD, &ipv4(17, 0, &udp(53, &query)))],
        ));
        buffer.extend(ack(0));
        let whole = messages(&buffer).len();
        for cut in 0..=buffer.len() {
            let found = messages(&buffer[..cut]);
            assert!(found.len() <= whole);
            for message in found {
                if let Message::Packet(logged) = message {
                    for end in 0..=logged.payload.len() {
                        parse_packet(&logged.payload[..end]);
                    }
                }
            }
        }
        for end in 0..=query.len() {
            dns_question(&query[..end]);
        }
        let mut state = 0x9e37_79b9u32;
        let mut noise = buffer.clone();
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let at = state as usize % noise.len();
            noise[at] = (state >> 24) as u8;
            for message in messages(&noise) {
                if let Message::Packet(logged) = message {
                    parse_packet(logged.payload);
                }
            }
            dns_question(&noise[noise.len() / 2..]);
        }
    }

    #[test]
    fn dns_compression_loops_and_forward_pointers_are_refused() {
        let to_itself = dns_query(&[0xc0, 12], 1);
        assert_eq!(dns_question(&to_itself), None);
        let label_then_back = dns_query(&[1, b'a', 0xc0, 12], 1);
        assert_eq!(dns_question(&label_then_back), None);
        let forward = dns_query(&[0xc0, 20, 0, 0, 0, 0, 0, 0, 1, b'a', 0], 1);
        assert_eq!(dns_question(&forward), None);
        let into_header = dns_query(&[0xc0, 2], 1);
        assert_eq!(dns_question(&into_header), None);
    }

    #[test]
    fn dns_compression_pointers_are_followed_backwards_only() {
        let mut message = dns_query(&labels("Example.org"), 1);
        let second = message.len();
        message.extend([3, b'w', b'w', b'w', 0xc0, 12, 0xff]);
        assert_eq!(
            name_at(&message, second),
            Some(("www.example.org".to_string(), second + 6))
        );
        let third = message.len();
        message.extend([0xc0, second as u8]);
        assert_eq!(
            name_at(&message, third),
            Some(("www.example.org".to_string(), third + 2))
        );
        let loops = message.len();
        message.extend([1, b'a', 0xc0, loops as u8]);
        assert_eq!(name_at(&message, loops), None);
        let mut chain = dns_query(&[0], 1);
        let mut previous = DNS_HEADER_LEN;
        for links in 1..=5 {
            let here = chain.len();
            chain.extend([1, b'a', 0xc0, previous as u8]);
            previous = here;
            let name = name_at(&chain, here).map(|(name, _)| name);
            let expected = (links <= MAX_POINTER_JUMPS).then(|| ["a"; 5][..links].join("."));
            assert_eq!(name, expected, "{links} links");
        }
    }

    #[test]
    fn dns_labels_are_escaped_and_limited() {
        let query = dns_query(b"\x03a\0b\x04x.\\Y\x02\xc3 \0", 16);
        assert_eq!(
            dns_question(&query),
            Some(("a\\000b.x\\.\\\\y.\\195\\032".to_string(), 16))
        );
        assert_eq!(
            dns_question(&dns_query(&[0], 2)),
            Some((".".to_string(), 2))
        );
        let mut long_label = vec![64];
        long_label.extend([b'a'; 64]);
        long_label.push(0);
        assert_eq!(dns_question(&dns_query(&long_label, 1)), None);
        let long_name = labels(&["abcdefghi"; 26].join("."));
        assert_eq!(dns_question(&dns_query(&long_name, 1)), None);
        let just_fits = labels(&["a"; 127].join("."));
        assert!(dns_question(&dns_query(&just_fits, 1)).is_some());
        let no_questions = {
            let mut message = dns_query(&labels("a"), 1);
            message[5] = 0;
            message
        };
        assert_eq!(dns_question(&no_questions), None);
    }

    #[test]
    fn config_request_bind_bytes() {
        let request = config_request(42, 0, 9, &[ConfigAttribute::Command(NFULNL_CFG_CMD_BIND)]);
        let expected: Vec<u8> = [
            &28u32.to_ne_bytes()[..],
            &0x0401u16.to_ne_bytes(),
            &5u16.to_ne_bytes(),
            &9u32.to_ne_bytes(),
            &0u32.to_ne_bytes(),
            &[0, 0, 0, 42],
            &5u16.to_ne_bytes(),
            &1u16.to_ne_bytes(),
            &[1, 0, 0, 0],
        ]
        .concat();
        assert_eq!(request, expected);
    }

    #[test]
    fn config_request_mode_and_flags_bytes() {
        let request = config_request(
            0x0102,
            10,
            1,
            &[
                ConfigAttribute::Mode {
                    copy_range: 0xffff,
                    copy_mode: NFULNL_COPY_PACKET,
                },
                ConfigAttribute::Flags(NFULNL_CFG_F_SEQ),
                ConfigAttribute::Timeout(100),
            ],
        );
        let expected: Vec<u8> = [
            &48u32.to_ne_bytes()[..],
            &0x0401u16.to_ne_bytes(),
            &5u16.to_ne_bytes(),
            &1u32.to_ne_bytes(),
            &0u32.to_ne_bytes(),
            &[10, 0, 1, 2],
            &10u16.to_ne_bytes(),
            &2u16.to_ne_bytes(),
            &[0, 0, 0xff, 0xff, 2, 0, 0, 0],
            &6u16.to_ne_bytes(),
            &6u16.to_ne_bytes(),
            &[0, 1, 0, 0],
            &8u16.to_ne_bytes(),
            &4u16.to_ne_bytes(),
            &[0, 0, 0, 100],
        ]
        .concat();
        assert_eq!(request, expected);
    }
}

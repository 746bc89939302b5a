//! Framing of an XML stream (RFC 6120 §4) into its header, its top-level elements and its close,
//! by scanning tags only. The generator's clients read every byte through this, so that the
//! benchmark messages can be timed from their bytes while everything else still goes to the
//! real parser: parsing each message fully cost the generator more than the server spent on it.

use rookery_xml::markup_end;

/// What a piece of the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Everything up to and including the root's start tag (`<stream:stream ...>`).
    Open,
    /// One top-level element, with any whitespace before it.
    Element,
    /// The root's end tag.
    Close,
}

#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Where scanning resumes: the start of the first tag not yet complete.
    scan: usize,
    /// Element depth at `scan`; the root is depth 1.
    depth: usize,
}

impl Splitter {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete piece and the length of its bytes at the front of [`Splitter::bytes`];
    /// take them away with [`Splitter::consume`] before asking again.
    pub fn next_piece(&mut self) -> Option<(Piece, usize)> {
        loop {
            let lt = self.scan + memchr(b'<', &self.buf[self.scan..])?;
            let end = markup_end(&self.buf[lt..])? + lt;
            let tag = &self.buf[lt..end];
            self.scan = end;
            let piece = if tag.starts_with(b"<?") || tag.starts_with(b"<!") {
                None
            } else if tag.starts_with(b"</") {
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    0 => Some(Piece::Close),
                    1 => Some(Piece::Element),
                    _ => None,
                }
            } else if tag.ends_with(b"/>") {
                (self.depth == 1).then_some(Piece::Element)
            } else {
                self.depth += 1;
                (self.depth == 1).then_some(Piece::Open)
            };
            if let Some(p) = piece {
                return Some((p, end));
            }
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.scan -= n;
    }
}

fn memchr(c: u8, b: &[u8]) -> Option<usize> {
    b.iter().position(|&x| x == c)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether a piece is a `<message>` stanza.
pub fn is_message(piece: &[u8]) -> bool {
    let start = piece.iter().position(|c| !c.is_ascii_whitespace());
    let rest = &piece[start.unwrap_or(piece.len())..];
    rest.starts_with(b"<message")
        && matches!(
            rest.get(8),
            Some(b' ' | b'>' | b'/' | b'\t' | b'\n' | b'\r')
        )
}

/// What a benchmark message (`<body>SEQ NANOS</body>`) says, read from its bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// An error bounce (`type='error'`).
    Bounced,
    /// Sent at this time of the process clock.
    Stamped(u64),
    /// A message without a body (a room's subject, say).
    NoBody,
    /// A body that is not a benchmark stamp.
    Other,
}

pub fn read_message(piece: &[u8]) -> Message {
    let lt = memchr(b'<', piece).unwrap_or(0);
    let Some(end) = markup_end(&piece[lt..]) else {
        return Message::Other;
    };
    let start_tag = &piece[lt..lt + end];
    if find(start_tag, b"type='error'").is_some() || find(start_tag, b"type=\"error\"").is_some() {
        return Message::Bounced;
    }
    let content = &piece[lt + end..];
    let Some(b) = find(content, b"<body") else {
        return Message::NoBody;
    };
    let Some(open) = markup_end(&content[b..]) else {
        return Message::Other;
    };
    let text = &content[b + open..];
    let Some(close) = find(text, b"</body>") else {
        return Message::Other;
    };
    let stamp = std::str::from_utf8(&text[..close])
        .ok()
        .and_then(|t| t.split_once(' '))
        .and_then(|(_seq, nanos)| nanos.trim().parse().ok());
    stamp.map_or(Message::Other, Message::Stamped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(chunks: &[&[u8]]) -> Vec<(Piece, String)> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c);
            while let Some((p, n)) = s.next_piece() {
                out.push((p, String::from_utf8(s.bytes()[..n].to_vec()).unwrap()));
                s.consume(n);
            }
        }
        out
    }

    #[test]
    fn frames_a_stream_fed_in_any_split() {
        let stream = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>\
            <message to='u@h/r' from=\"v@h/x>y\"><body>1 2</body><x xmlns='y'/></message> \
            <presence/><iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>\
            <!-- c<o>mment --><message><![CDATA[<not a tag>]]></message></stream:stream>";
        let want = vec![
            (
                Piece::Open,
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>",
            ),
            (
                Piece::Element,
                "<message to='u@h/r' from=\"v@h/x>y\"><body>1 2</body><x xmlns='y'/></message>",
            ),
            (Piece::Element, " <presence/>"),
            (
                Piece::Element,
                "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
            ),
            (
                Piece::Element,
                "<!-- c<o>mment --><message><![CDATA[<not a tag>]]></message>",
            ),
            (Piece::Close, "</stream:stream>"),
        ];
        let want: Vec<(Piece, String)> = want.into_iter().map(|(p, s)| (p, s.into())).collect();
        assert_eq!(pieces(&[stream.as_bytes()]), want);
        // Byte by byte: every tag, comment and CDATA section split at every point.
        let bytes: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
        assert_eq!(pieces(&bytes), want);
        let threes: Vec<&[u8]> = stream.as_bytes().chunks(3).collect();
        assert_eq!(pieces(&threes), want);
    }

    #[test]
    fn reads_benchmark_messages() {
        let m = b"<message from='a@h/r' type='chat'><body>7 123456</body></message>";
        assert!(is_message(m));
        assert!(!is_message(b"<messages/>"));
        assert!(is_message(b"\n<message/>"));
        assert_eq!(read_message(m), Message::Stamped(123456));
        let bounce = b"<message type=\"error\"><body>7 1</body><error/></message>";
        assert_eq!(read_message(bounce), Message::Bounced);
        let lang = b"<message><body xml:lang='en'>3 99</body></message>";
        assert_eq!(read_message(lang), Message::Stamped(99));
        assert_eq!(
            read_message(b"<message><body>hello</body></message>"),
            Message::Other
        );
        assert_eq!(read_message(b"<message/>"), Message::NoBody);
        assert_eq!(
            read_message(b"<message type='groupchat'><subject/></message>"),
            Message::NoBody
        );
    }
}

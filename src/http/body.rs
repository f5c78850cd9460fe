//! How a message body is delimited on the wire.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    /// No body at all.
    #[default]
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Chunked transfer coding; ends with the zero-size chunk.
    Chunked,
    /// Response body delimited by the upstream closing the connection.
    Close,
}

impl BodyKind {
    pub fn has_body(self) -> bool {
        self != BodyKind::None
    }
}

//! The codec the generated services and clients use: prost's, except that a message that
//! does not decode is `INVALID_ARGUMENT` (the sender sent bytes that are not a drover.v1
//! message), where `tonic_prost` answers `INTERNAL`, which wrongly blames the receiver.
//!
//! Set in `build.rs` with `codec_path`, so it applies to both sides: a coordinator answers
//! a garbage request with `INVALID_ARGUMENT`, and a client reading a garbage response sees
//! the same code and message.
//!
//! Its buffers start at 1 KiB instead of tonic's 8 KiB. Each stream holds one to encode and
//! one to decode for its whole life, and a coordinator holds one stream per updater; the
//! messages are small (a heartbeat is under 100 bytes), and a larger one grows its buffer.

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// A stream's encode and decode buffers start this big (see the module's text).
const BUFFER_SIZE: usize = 1024;
/// tonic's default: how much an encoder gathers before it yields.
const YIELD_THRESHOLD: usize = 32 * 1024;

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

/// [`ProstCodec`] with decode errors reported as `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct DroverCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for DroverCodec<T, U> {
    fn default() -> Self {
        Self {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for DroverCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = DroverEncoder<T>;
    type Decoder = DroverDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        DroverEncoder(self.inner.encoder())
    }

    fn decoder(&mut self) -> Self::Decoder {
        DroverDecoder(self.inner.decoder())
    }
}

/// Decodes with prost; a decode error becomes `INVALID_ARGUMENT` naming what was wrong.
#[derive(Debug, Clone)]
pub struct DroverDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for DroverDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            Status::invalid_argument(format!(
                "the message is not a valid drover.v1 protobuf message ({}); nothing was done: \
                 send messages encoded from the drover.v1 .proto files",
                status.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

/// Encodes with prost, into a small buffer.
#[derive(Debug, Clone)]
pub struct DroverEncoder<T>(ProstEncoder<T>);

impl<T: Message> Encoder for DroverEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        self.0.encode(item, buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

//! The codec the generated services and clients use: prost's, except that a message that
//! does not decode is `INVALID_ARGUMENT` (the sender sent bytes that are not a drover.v1
//! message), where `tonic_prost` answers `INTERNAL`, which wrongly blames the receiver.
//!
//! Set in `build.rs` with `codec_path`, so it applies to both sides: a coordinator answers
//! a garbage request with `INVALID_ARGUMENT`, and a client reading a garbage response sees
//! the same code and message.

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

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
    type Encoder = ProstEncoder<T>;
    type Decoder = DroverDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
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
        self.0.buffer_settings()
    }
}

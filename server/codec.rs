//! The protobuf codec for every generated service: tonic-prost's, except that a client event
//! that does not decode becomes an empty `ClientEvent`. The Chat stream then answers it with an
//! ErrorEvent and goes on, instead of tonic ending the whole stream on one bad frame.
//!
//! Its buffers start small: each open stream holds one for encoding and one for decoding, and
//! tonic's default of 8 KiB each would be most of an idle session's memory. They grow as a
//! message needs.

use std::{any::TypeId, marker::PhantomData};

use bytes::Buf;
use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstEncoder};

use crate::{error::Error, proto::ClientEvent};

/// A stream's first buffer size (most events are far smaller); beyond it a buffer grows in steps
/// of this size.
const BUFFER_SIZE: usize = 512;
/// tonic's default: encoded messages are handed to the transport once this much is gathered.
const YIELD_THRESHOLD: usize = 32 * 1024;

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

/// tonic-prost's codec with lenient decoding of `ClientEvent`s.
#[derive(Debug, Clone)]
pub struct LenientCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for LenientCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for LenientCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = LenientDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        LenientDecoder { _type: PhantomData }
    }
}

/// Decodes `U`; an undecodable `ClientEvent` becomes an empty one.
#[derive(Debug)]
pub struct LenientDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default + 'static> Decoder for LenientDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode_lenient(buf).map(Some)
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

/// What [`LenientDecoder`] does with one message's bytes: `U`, an empty `ClientEvent` when a
/// client event does not decode, or INVALID_ARGUMENT on `request` for other undecodable messages.
pub fn decode_lenient<U: Message + Default + 'static>(buf: &mut impl Buf) -> Result<U, Status> {
    match U::decode(&mut *buf) {
        Ok(message) => Ok(message),
        Err(err) if TypeId::of::<U>() == TypeId::of::<ClientEvent>() => {
            tracing::debug!(error = %err, "undecodable client event");
            // Skip the rest of the frame so the next one starts cleanly.
            buf.advance(buf.remaining());
            Ok(U::default())
        }
        Err(err) => Err(Error::invalid("request", format!("does not decode: {err}")).into()),
    }
}

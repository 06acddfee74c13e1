//! The protobuf codec of the gRPC API: prost, with a smaller encode buffer than tonic's default.
//!
//! tonic gives every response body an encode buffer of `buffer_size` bytes when the response starts and
//! keeps it until the response ends. A `WatchApplication` stream lives for hours and sends a few hundred
//! bytes now and then, so with tonic's default of 8 KiB that buffer would be most of an idle stream's
//! memory (BENCHMARKS.md, "Idle watchers per GiB"). The buffer grows when a message needs more room, so a
//! small one costs a reallocation only for the rare large message; a batch of `WatchApplications`
//! changes is still sent once it reaches the yield threshold.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The encode buffer each response starts with: room for an application and its frame header.
pub const ENCODE_BUFFER_BYTES: usize = 1024;
/// How many encoded bytes a streaming response gathers before handing them to HTTP/2 (tonic's default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// The codec the generated service and client use (`codec_path` in `build.rs`).
#[derive(Debug, Clone)]
pub struct LeanProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanProstCodec<T, U> {
    fn default() -> Self {
        LeanProstCodec(PhantomData)
    }
}

impl<T, U> Codec for LeanProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(
            ENCODE_BUFFER_BYTES,
            YIELD_THRESHOLD_BYTES,
        ))
    }

    fn decoder(&mut self) -> Self::Decoder {
        // Requests are decoded once and dropped: tonic's default buffer costs nothing that lasts.
        ProstCodec::<T, U>::default().decoder()
    }
}

//! The libopus functions and constants the wrapper uses, declared by hand from `opus.h` and
//! `opus_defines.h` (libopus 1.x, whose API has not changed since 1.0): see the README for why
//! not a generated binding.

use std::ffi::{c_char, c_int, c_uchar};

/// `OpusEncoder`: only ever handled by pointer.
#[repr(C)]
pub(crate) struct OpusEncoder {
    _opaque: [u8; 0],
}

/// `OpusDecoder`: only ever handled by pointer.
#[repr(C)]
pub(crate) struct OpusDecoder {
    _opaque: [u8; 0],
}

pub(crate) const OPUS_OK: c_int = 0;
pub(crate) const OPUS_APPLICATION_VOIP: c_int = 2048;
pub(crate) const OPUS_APPLICATION_AUDIO: c_int = 2049;
pub(crate) const OPUS_SET_BITRATE_REQUEST: c_int = 4002;
pub(crate) const OPUS_SET_MAX_BANDWIDTH_REQUEST: c_int = 4004;
pub(crate) const OPUS_SET_COMPLEXITY_REQUEST: c_int = 4010;
pub(crate) const OPUS_SET_SIGNAL_REQUEST: c_int = 4024;
pub(crate) const OPUS_SIGNAL_VOICE: c_int = 3001;

#[cfg(opus_linked)]
mod linked {
    use super::*;

    extern "C" {
        pub(crate) fn opus_get_version_string() -> *const c_char;
        pub(crate) fn opus_encoder_create(
            fs: i32,
            channels: c_int,
            application: c_int,
            error: *mut c_int,
        ) -> *mut OpusEncoder;
        pub(crate) fn opus_encoder_destroy(st: *mut OpusEncoder);
        pub(crate) fn opus_encode(
            st: *mut OpusEncoder,
            pcm: *const i16,
            frame_size: c_int,
            data: *mut c_uchar,
            max_data_bytes: i32,
        ) -> i32;
        /// Variadic in C: every request used here takes one `opus_int32` by value.
        fn opus_encoder_ctl(st: *mut OpusEncoder, request: c_int, ...) -> c_int;
        pub(crate) fn opus_decoder_create(
            fs: i32,
            channels: c_int,
            error: *mut c_int,
        ) -> *mut OpusDecoder;
        pub(crate) fn opus_decoder_destroy(st: *mut OpusDecoder);
        pub(crate) fn opus_decode(
            st: *mut OpusDecoder,
            data: *const c_uchar,
            len: i32,
            pcm: *mut i16,
            frame_size: c_int,
            decode_fec: c_int,
        ) -> c_int;
    }

    /// `opus_encoder_ctl(st, request, value)` for a request that sets one `opus_int32`.
    ///
    /// # Safety
    /// `st` is a live encoder and `request` one of the `OPUS_SET_*_REQUEST`s that read one
    /// `opus_int32` argument.
    pub(crate) unsafe fn encoder_set(st: *mut OpusEncoder, request: c_int, value: i32) -> c_int {
        // SAFETY: per the function's contract, the request reads exactly one opus_int32.
        unsafe { opus_encoder_ctl(st, request, value) }
    }
}
#[cfg(opus_linked)]
pub(crate) use linked::*;

/// Stand-ins when the build found no libopus (see build.rs): nothing is ever created, so no
/// encoder or decoder is made and nothing else is called with a state.
#[cfg(not(opus_linked))]
#[allow(clippy::missing_safety_doc)]
mod stubs {
    use super::*;

    pub(crate) unsafe fn opus_get_version_string() -> *const c_char {
        c"none".as_ptr()
    }

    pub(crate) unsafe fn opus_encoder_create(
        _fs: i32,
        _channels: c_int,
        _application: c_int,
        error: *mut c_int,
    ) -> *mut OpusEncoder {
        // SAFETY: the caller passes a valid pointer, as to the real function.
        unsafe { *error = -5 }; // OPUS_UNIMPLEMENTED
        std::ptr::null_mut()
    }

    pub(crate) unsafe fn opus_encoder_destroy(_st: *mut OpusEncoder) {}

    pub(crate) unsafe fn opus_encode(
        _st: *mut OpusEncoder,
        _pcm: *const i16,
        _frame_size: c_int,
        _data: *mut c_uchar,
        _max_data_bytes: i32,
    ) -> i32 {
        -5
    }

    pub(crate) unsafe fn encoder_set(_st: *mut OpusEncoder, _request: c_int, _value: i32) -> c_int {
        -5
    }

    pub(crate) unsafe fn opus_decoder_create(
        _fs: i32,
        _channels: c_int,
        error: *mut c_int,
    ) -> *mut OpusDecoder {
        // SAFETY: as for the encoder.
        unsafe { *error = -5 };
        std::ptr::null_mut()
    }

    pub(crate) unsafe fn opus_decoder_destroy(_st: *mut OpusDecoder) {}

    pub(crate) unsafe fn opus_decode(
        _st: *mut OpusDecoder,
        _data: *const c_uchar,
        _len: i32,
        _pcm: *mut i16,
        _frame_size: c_int,
        _decode_fec: c_int,
    ) -> c_int {
        -5
    }
}
#[cfg(not(opus_linked))]
pub(crate) use stubs::*;

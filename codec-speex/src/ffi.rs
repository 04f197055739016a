//! The libspeex functions and constants the wrapper uses, declared by hand from `speex.h` and
//! `speex_bits.h` (Speex 1.2): see the README for why not a generated binding.

use std::ffi::{c_char, c_int, c_void};

/// `SpeexMode`: only ever handled by pointer.
#[repr(C)]
pub(crate) struct SpeexMode {
    _opaque: [u8; 0],
}

/// `SpeexBits`, field for field.
#[repr(C)]
pub(crate) struct SpeexBits {
    chars: *mut c_char,
    nb_bits: c_int,
    char_ptr: c_int,
    bit_ptr: c_int,
    owner: c_int,
    overflow: c_int,
    buf_size: c_int,
    reserved1: c_int,
    reserved2: *mut c_void,
}

impl SpeexBits {
    /// All zero, as before `speex_bits_init`.
    pub(crate) fn zeroed() -> Self {
        SpeexBits {
            chars: std::ptr::null_mut(),
            nb_bits: 0,
            char_ptr: 0,
            bit_ptr: 0,
            owner: 0,
            overflow: 0,
            buf_size: 0,
            reserved1: 0,
            reserved2: std::ptr::null_mut(),
        }
    }
}

pub(crate) const SPEEX_MODEID_NB: c_int = 0;
pub(crate) const SPEEX_MODEID_WB: c_int = 1;
pub(crate) const SPEEX_SET_QUALITY: c_int = 4;

#[cfg(speex_linked)]
extern "C" {
    pub(crate) fn speex_lib_get_mode(mode: c_int) -> *const SpeexMode;
    pub(crate) fn speex_encoder_init(mode: *const SpeexMode) -> *mut c_void;
    pub(crate) fn speex_encoder_destroy(state: *mut c_void);
    pub(crate) fn speex_encoder_ctl(state: *mut c_void, request: c_int, ptr: *mut c_void) -> c_int;
    pub(crate) fn speex_encode_int(
        state: *mut c_void,
        input: *mut i16,
        bits: *mut SpeexBits,
    ) -> c_int;
    pub(crate) fn speex_decoder_init(mode: *const SpeexMode) -> *mut c_void;
    pub(crate) fn speex_decoder_destroy(state: *mut c_void);
    pub(crate) fn speex_decode_int(
        state: *mut c_void,
        bits: *mut SpeexBits,
        out: *mut i16,
    ) -> c_int;
    pub(crate) fn speex_bits_init(bits: *mut SpeexBits);
    pub(crate) fn speex_bits_destroy(bits: *mut SpeexBits);
    pub(crate) fn speex_bits_reset(bits: *mut SpeexBits);
    pub(crate) fn speex_bits_read_from(bits: *mut SpeexBits, bytes: *const c_char, len: c_int);
    pub(crate) fn speex_bits_write(
        bits: *mut SpeexBits,
        bytes: *mut c_char,
        max_len: c_int,
    ) -> c_int;
    pub(crate) fn speex_bits_nbytes(bits: *mut SpeexBits) -> c_int;
    pub(crate) fn speex_bits_remaining(bits: *mut SpeexBits) -> c_int;
    pub(crate) fn speex_bits_insert_terminator(bits: *mut SpeexBits);
}

/// Stand-ins when the build found no libspeex (see build.rs): nothing initialises, so no
/// encoder or decoder is ever made and nothing else is called with a state.
#[cfg(not(speex_linked))]
#[allow(clippy::missing_safety_doc)]
mod stubs {
    use super::*;

    pub(crate) unsafe fn speex_lib_get_mode(_mode: c_int) -> *const SpeexMode {
        std::ptr::null()
    }

    pub(crate) unsafe fn speex_encoder_init(_mode: *const SpeexMode) -> *mut c_void {
        std::ptr::null_mut()
    }

    pub(crate) unsafe fn speex_encoder_destroy(_state: *mut c_void) {}

    pub(crate) unsafe fn speex_encoder_ctl(
        _state: *mut c_void,
        _request: c_int,
        _ptr: *mut c_void,
    ) -> c_int {
        -1
    }

    pub(crate) unsafe fn speex_encode_int(
        _state: *mut c_void,
        _input: *mut i16,
        _bits: *mut SpeexBits,
    ) -> c_int {
        -1
    }

    pub(crate) unsafe fn speex_decoder_init(_mode: *const SpeexMode) -> *mut c_void {
        std::ptr::null_mut()
    }

    pub(crate) unsafe fn speex_decoder_destroy(_state: *mut c_void) {}

    pub(crate) unsafe fn speex_decode_int(
        _state: *mut c_void,
        _bits: *mut SpeexBits,
        _out: *mut i16,
    ) -> c_int {
        -1
    }

    pub(crate) unsafe fn speex_bits_init(_bits: *mut SpeexBits) {}

    pub(crate) unsafe fn speex_bits_destroy(_bits: *mut SpeexBits) {}

    pub(crate) unsafe fn speex_bits_reset(_bits: *mut SpeexBits) {}

    pub(crate) unsafe fn speex_bits_read_from(
        _bits: *mut SpeexBits,
        _bytes: *const c_char,
        _len: c_int,
    ) {
    }

    pub(crate) unsafe fn speex_bits_write(
        _bits: *mut SpeexBits,
        _bytes: *mut c_char,
        _max_len: c_int,
    ) -> c_int {
        -1
    }

    pub(crate) unsafe fn speex_bits_nbytes(_bits: *mut SpeexBits) -> c_int {
        -1
    }

    pub(crate) unsafe fn speex_bits_remaining(_bits: *mut SpeexBits) -> c_int {
        -1
    }

    pub(crate) unsafe fn speex_bits_insert_terminator(_bits: *mut SpeexBits) {}
}
#[cfg(not(speex_linked))]
pub(crate) use stubs::*;

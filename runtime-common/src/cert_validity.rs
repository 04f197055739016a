//! [`validity`]: the validity period of an X.509 certificate (RFC 5280 4.1.2.5), read from its
//! DER encoding, so that the server refuses an expired certificate at start with a message
//! that says so (rustls would accept it, and every client would fail its handshake).
//!
//! Only the path to the field is walked: `Certificate` (a SEQUENCE) holds `tbsCertificate` (a
//! SEQUENCE) whose items are an optional `[0]` version, the serial number, the signature
//! algorithm, the issuer, then `Validity` (a SEQUENCE of two times, each a UTCTime or a
//! GeneralizedTime ending in `Z`). Every length is checked against what is left, so any byte
//! string is a safe input: it yields the period or an error, never a panic.

use std::fmt;

/// A certificate's validity period, in seconds since the UNIX epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first second the certificate is valid.
    pub not_before: i64,
    /// The last second the certificate is valid.
    pub not_after: i64,
}

/// Why a certificate's validity could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidityError(&'static str);

impl fmt::Display for ValidityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an X.509 certificate: {}", self.0)
    }
}

impl std::error::Error for ValidityError {}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The validity period of the DER certificate `der`.
///
/// ```
/// use siprtmp_runtime_common::cert_validity::validity;
/// assert!(validity(b"not a certificate").is_err());
/// ```
pub fn validity(der: &[u8]) -> Result<Validity, ValidityError> {
    let mut input = der;
    let certificate = expect(&mut input, SEQUENCE, "no certificate sequence")?;
    let mut certificate = certificate;
    let mut tbs = expect(&mut certificate, SEQUENCE, "no tbsCertificate")?;
    if tbs.first() == Some(&VERSION) {
        next(&mut tbs)?;
    }
    expect(&mut tbs, INTEGER, "no serial number")?;
    expect(&mut tbs, SEQUENCE, "no signature algorithm")?;
    expect(&mut tbs, SEQUENCE, "no issuer")?;
    let mut period = expect(&mut tbs, SEQUENCE, "no validity")?;
    let not_before = time(&mut period)?;
    let not_after = time(&mut period)?;
    Ok(Validity {
        not_before,
        not_after,
    })
}

/// The next item's tag and contents; `input` moves past it.
fn next<'a>(input: &mut &'a [u8]) -> Result<(u8, &'a [u8]), ValidityError> {
    let &[tag, first, ref rest @ ..] = *input else {
        return Err(ValidityError("truncated"));
    };
    // High-tag-number form: no item on the path uses it.
    if tag & 0x1f == 0x1f {
        return Err(ValidityError("unexpected tag"));
    }
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(ValidityError("bad length"));
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return Err(ValidityError("truncated"));
    }
    let (contents, after) = rest.split_at(len);
    *input = after;
    Ok((tag, contents))
}

/// The next item's contents, which must carry `tag`.
fn expect<'a>(
    input: &mut &'a [u8],
    tag: u8,
    missing: &'static str,
) -> Result<&'a [u8], ValidityError> {
    match next(input)? {
        (found, contents) if found == tag => Ok(contents),
        _ => Err(ValidityError(missing)),
    }
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as
/// seconds since the UNIX epoch.
fn time(input: &mut &[u8]) -> Result<i64, ValidityError> {
    let (tag, text) = next(input)?;
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 13 => {
            let yy = digits(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 15 => (digits(&text[..4])?, &text[4..]),
        _ => return Err(ValidityError("bad time")),
    };
    if rest[10] != b'Z' {
        return Err(ValidityError("time not in UTC"));
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let (hour, minute, second) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(ValidityError("bad time"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// ASCII decimal digits as a number.
fn digits(text: &[u8]) -> Result<i64, ValidityError> {
    text.iter().try_fold(0i64, |acc, &b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + i64::from(b - b'0'))
        } else {
            Err(ValidityError("bad time"))
        }
    })
}

/// Days from 1970-01-01 to the proleptic Gregorian date (the usual era arithmetic).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `seconds` since the UNIX epoch as `YYYY-MM-DD HH:MM:SS UTC`, for messages.
pub fn format_utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // The inverse of `days_from_civil`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn certificate(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["example.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_gives_its_period_in_either_time_form() {
        // 2049 is written as a UTCTime, 2050 as a GeneralizedTime (RFC 5280).
        let der = certificate((2020, 2, 29), (2050, 1, 1));
        let period = validity(&der).unwrap();
        assert_eq!(format_utc(period.not_before), "2020-02-29 00:00:00 UTC");
        assert_eq!(format_utc(period.not_after), "2050-01-01 00:00:00 UTC");
        let der = certificate((1999, 12, 31), (2049, 12, 31));
        let period = validity(&der).unwrap();
        assert_eq!(period.not_before, 946_598_400);
        assert_eq!(format_utc(period.not_after), "2049-12-31 00:00:00 UTC");
    }

    #[test]
    fn truncated_and_foreign_input_is_refused() {
        let der = certificate((2020, 1, 1), (2030, 1, 1));
        for cut in [0, 1, 2, 10, 60, der.len() / 2] {
            assert!(validity(&der[..cut]).is_err(), "cut at {cut}");
        }
        assert!(validity(b"-----BEGIN CERTIFICATE-----").is_err());
        // A length that claims more than there is.
        assert!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x30]).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_are_safe(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = validity(&data);
        }

        /// A real certificate with any byte changed: an error or a period, never a panic.
        #[test]
        fn a_damaged_certificate_is_safe(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut der = certificate((2021, 6, 1), (2031, 6, 1));
            let i = at.index(der.len());
            der[i] = byte;
            let _ = validity(&der);
        }

        /// Dates round-trip through the certificate and the formatting.
        #[test]
        fn dates_round_trip(year in 1951i32..2100, month in 1u8..=12, day in 1u8..=28) {
            let der = certificate((year, month, day), (2100, 1, 1));
            let period = validity(&der).unwrap();
            prop_assert_eq!(
                format_utc(period.not_before),
                format!("{year:04}-{month:02}-{day:02} 00:00:00 UTC")
            );
            prop_assert_eq!(
                period.not_before,
                days_from_civil(i64::from(year), i64::from(month), i64::from(day)) * 86_400
            );
        }
    }
}

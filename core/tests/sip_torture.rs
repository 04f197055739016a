//! RFC 4475 ("SIP Torture Test Messages") run against the SIP message layer.
//!
//! The message texts are transcribed from RFC 4475 section 3. The RFC prints them with LF line
//! ends; on the wire they are CRLF, so [`wire`] converts. Two messages need special care:
//!
//! - 3.1.1.2 (`intmeth`) carries raw BEL, NUL and DEL octets inside a quoted string and UTF-8
//!   text; it is written with Rust escapes instead of a raw string.
//! - 3.1.1.11 (`mpart01`) has a binary body part (a CMS signature in the RFC). Its exact octets
//!   are not reproduced here; the second body part is a deterministic filler of the same length
//!   that contains NUL, CR, LF and high bytes, which exercises the same property: the body
//!   must be framed by Content-Length (553) alone, never by scanning its content.
//!
//! Valid messages (3.1.1.x) have their parsed structure asserted. Invalid messages (3.1.2.x)
//! are asserted rejected with the specific error, except the one this layer deliberately
//! accepts (3.1.2.12, see its reason in the table). The section 3.2-3.4 messages
//! (application-layer semantics) are also run: they must parse, with the framing
//! exception of 3.3.9, whose conflicting Content-Length values make the body unframeable.

use bytes::BytesMut;
use siprtmp_core::sip::{
    parse_datagram, Contacts, Host, Method, RPort, SipError, SipMessage, StreamFramer, Uri,
};

/// RFC text (LF line ends) to wire bytes (CRLF).
fn wire(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

/// What a valid message must parse into.
struct Valid {
    section: &'static str,
    bytes: Vec<u8>,
    /// `Ok((method, request-uri))` for requests, `Err(status)` for responses.
    start: Result<(&'static str, &'static str), u16>,
    call_id: &'static str,
    cseq: (u32, &'static str),
    vias: usize,
    from_tag: Option<&'static str>,
    to_tag: Option<&'static str>,
    content_length: Option<usize>,
    /// Message-specific assertions.
    extra: fn(&SipMessage),
}

const SDP_150: &str = "v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
";

fn mpart01() -> Vec<u8> {
    let head = wire(
        "MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=
Contact: <sip:fluffy@127.0.0.1:5070>
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Date: Sat, 15 Oct 2005 04:44:56 GMT
User-Agent: SIPimp.org/0.2.5 (curses)
Content-Length: 553

",
    );
    let part1 = wire(
        "--7a9cbec02ceef655
Content-Type: text/plain
Content-Transfer-Encoding: binary

Hello
--7a9cbec02ceef655
Content-Type: application/octet-stream
Content-Transfer-Encoding: binary

",
    );
    let tail = wire("\n--7a9cbec02ceef655--\n");
    let filler_len = 553 - part1.len() - tail.len();
    // Starts like DER (0x30 0x82) and then cycles through every octet value, NUL, CR and LF
    // included.
    let filler = [0x30u8, 0x82]
        .into_iter()
        .chain((0..filler_len - 2).map(|i| (i * 7 % 256) as u8));
    let mut m = head;
    m.extend(part1);
    m.extend(filler);
    m.extend(tail);
    m
}

fn valid_cases() -> Vec<Valid> {
    vec![
        Valid {
            section: "3.1.1.1 A Short Tortuous INVITE",
            bytes: wire(&format!(
                "{}{}",
                r#"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

"#,
                SDP_150.replace("192.0.2.1\ns", "192.0.2.3\ns").replace("IP4 192.0.2.1\nt", "IP4 192.0.2.4\nt")
            )),
            start: Ok(("INVITE", "sip:vivekg@chair-dnrc.example.com;unknownparam")),
            call_id: "wsinv.ndaksdj@192.0.2.1",
            cseq: (9, "INVITE"),
            vias: 3,
            from_tag: Some("98asjd8"),
            to_tag: Some("1918181833n"),
            content_length: Some(150),
            extra: |m| {
                let h = m.headers();
                let from = h.from().unwrap();
                assert_eq!(from.display_name.as_deref(), Some(r#"J Rosenberg \""#));
                let to = h.to().unwrap();
                assert_eq!(to.display_name, None);
                assert_eq!(to.uri.as_sip().unwrap().user.as_deref(), Some("vivekg"));
                let Uri::Sip(ruri) = &request(m).uri else { panic!() };
                assert_eq!(ruri.params.get("unknownparam"), Some(None));
                assert_eq!(h.max_forwards().unwrap(), Some(68));
                assert_eq!(h.get("Subject"), Some(""));
                assert_eq!(
                    h.get("newfangledheader"),
                    Some("newfangled value continued newfangled value")
                );
                assert_eq!(h.values("UnknownHeaderWithUnusualValue"), vec![";;,,;;,;"]);
                let vias = h.vias().unwrap();
                assert_eq!(
                    vias.iter().map(|v| (v.transport.as_str(), v.host.to_string(), v.branch().unwrap()))
                        .collect::<Vec<_>>(),
                    vec![
                        ("UDP", "192.0.2.2".to_string(), "390skdjuw"),
                        ("TCP", "spindle.example.com".to_string(), "z9hG4bK9ikj8"),
                        ("UDP", "192.168.255.111".to_string(), "z9hG4bK30239"),
                    ]
                );
                let Contacts::List(c) = h.contacts().unwrap() else { panic!() };
                assert_eq!(c.len(), 1);
                assert_eq!(c[0].display_name.as_deref(), Some(r#"Quoted string """#));
                let params: Vec<_> = c[0].params.iter().collect();
                assert_eq!(
                    params,
                    vec![("newparam", Some("newvalue")), ("secondparam", None), ("q", Some("0.33"))]
                );
                let route = &h.routes().unwrap()[0];
                let ru = route.uri.as_sip().unwrap();
                assert_eq!(ru.params.len(), 3);
                assert_eq!(ru.params.value("unknownwith"), Some("value"));
                assert_eq!(h.content_type(), Some("application/sdp"));
            },
        },
        Valid {
            section: "3.1.1.2 Wide Range of Valid Characters",
            bytes: wire(
                "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\u{feff}\u{5927}\u{505c}\u{96fb}
Content-Length: 0

",
            ),
            start: Ok((
                "!interesting-Method0123456789_*+`.%indeed'~",
                "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
            )),
            call_id: "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
            cseq: (139122385, "!interesting-Method0123456789_*+`.%indeed'~"),
            vias: 1,
            from_tag: Some("_token~1'+`*%!-."),
            to_tag: None,
            content_length: Some(0),
            extra: |m| {
                let h = m.headers();
                assert!(matches!(m.method(), Some(Method::Extension(_))));
                let Uri::Sip(ruri) = &request(m).uri else { panic!() };
                assert_eq!(ruri.user.as_deref(), Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
                assert_eq!(ruri.password.as_deref(), Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));
                assert_eq!(
                    h.to().unwrap().display_name.as_deref(),
                    Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}")
                );
                let from = h.from().unwrap();
                assert_eq!(from.display_name.as_deref(), Some("token1~` token2'+_ token3*%!.-"));
                assert_eq!(
                    from.params.value("fromParam''~+*_!.-%"),
                    Some("\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\"")
                );
                assert_eq!(h.vias().unwrap()[0].branch(), Some("z9hG4bK-.!%66*_+`'~"));
                assert_eq!(h.max_forwards().unwrap(), Some(255));
                assert_eq!(
                    h.get("extensionHeader-!.%*+_`'~").unwrap().as_bytes(),
                    b"\xEF\xBB\xBF\xE5\xA4\xA7\xE5\x81\x9C\xE9\x9B\xBB"
                );
            },
        },
        Valid {
            section: "3.1.1.3 Valid Use of the % Escaping Mechanism",
            bytes: wire(&format!(
                "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 150

{SDP_150}"
            )),
            start: Ok(("INVITE", "sip:sips%3Auser%40example.com@example.net")),
            call_id: "esc01.239409asdfakjkn23onasd0-3234",
            cseq: (234234, "INVITE"),
            vias: 1,
            from_tag: Some("938"),
            to_tag: None,
            content_length: Some(150),
            extra: |m| {
                let h = m.headers();
                let Uri::Sip(ruri) = &request(m).uri else { panic!() };
                assert_eq!(ruri.user_decoded().unwrap(), b"sips:user@example.com");
                assert_eq!(ruri.host, Host::Domain("example.net".into()));
                assert_eq!(h.to().unwrap().uri.as_sip().unwrap().user_decoded().unwrap(), b"user");
                assert_eq!(
                    h.from().unwrap().uri.as_sip().unwrap().user_decoded().unwrap(),
                    b"I have spaces"
                );
                let Contacts::List(c) = h.contacts().unwrap() else { panic!() };
                let cu = c[0].uri.as_sip().unwrap();
                assert_eq!(cu.user_decoded().unwrap(), b"caller");
                assert_eq!(cu.params.get("%6C%72"), Some(None));
                // Not recursively unescaped: "value%41", not "valueA".
                let v = cu.params.value("n%61me").unwrap();
                assert_eq!(String::from_utf8(percent(v)).unwrap(), "value%41");
                assert_eq!(h.content_type(), Some("application/sdp"));
            },
        },
        Valid {
            section: "3.1.1.4 Escaped Nulls in URIs",
            bytes: wire(
                "REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

",
            ),
            start: Ok(("REGISTER", "sip:example.com")),
            call_id: "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
            cseq: (14398234, "REGISTER"),
            vias: 1,
            from_tag: Some("839923423"),
            to_tag: None,
            content_length: Some(0),
            extra: |m| {
                let h = m.headers();
                assert_eq!(h.to().unwrap().uri.as_sip().unwrap().user_decoded().unwrap(), b"null-\0-null");
                let Contacts::List(c) = h.contacts().unwrap() else { panic!() };
                let users: Vec<_> = c.iter().map(|a| a.uri.as_sip().unwrap().user_decoded().unwrap()).collect();
                assert_eq!(users, vec![b"\0".to_vec(), b"\0\0".to_vec()]);
            },
        },
        Valid {
            section: "3.1.1.5 Use of % When It Is Not an Escape",
            bytes: wire(
                r#"RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

"#,
            ),
            start: Ok(("RE%47IST%45R", "sip:registrar.example.com")),
            call_id: "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
            cseq: (29344, "RE%47IST%45R"),
            vias: 1,
            from_tag: Some("f232jadfj23"),
            to_tag: None,
            content_length: Some(0),
            extra: |m| {
                let h = m.headers();
                assert_eq!(m.method(), Some(&Method::Extension("RE%47IST%45R".into())));
                assert_eq!(h.to().unwrap().display_name.as_deref(), Some("%Z%45"));
                assert_eq!(h.vias().unwrap()[0].branch(), Some("z9hG4bK209%fzsnel234"));
                let Contacts::List(c) = h.contacts().unwrap() else { panic!() };
                assert_eq!(c.len(), 2, "C%6Fntact is not Contact");
                assert_eq!(h.get("C%6Fntact"), Some("<sip:alias2@host2.example.com>"));
            },
        },
        Valid {
            section: "3.1.1.6 Message with No LWS between Display Name and <",
            bytes: wire(
                "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

",
            ),
            start: Ok(("OPTIONS", "sip:user@example.com")),
            call_id: "lwsdisp.1234abcd@funky.example.com",
            cseq: (60, "OPTIONS"),
            vias: 1,
            from_tag: Some("323"),
            to_tag: None,
            content_length: Some(0),
            extra: |m| {
                assert_eq!(m.headers().from().unwrap().display_name.as_deref(), Some("caller"));
            },
        },
        Valid {
            section: "3.1.1.7 Long Values in Header Fields",
            bytes: wire(&format!(
                r#"INVITE sip:user@example.com SIP/2.0
To: "I have a user name of extremeextremeextremeextremeextremeextremeextremeextremeextremeextreme proportion"<sip:user@example.com:6000;unknownparam1=verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongvalue;longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename=shortvalue;verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue>
F: sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername@example.net;tag=12982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982424;unknownheaderparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename=unknowheaderparamvaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevalue;unknownValuelessparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamname
Call-ID: longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid
CSeq: 3882340 INVITE
Unknown-LongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLong-Name: unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-value; unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-parameter-name = unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-parameter-value
Via: SIP/2.0/TCP sip33.example.com
v: SIP/2.0/TCP sip32.example.com
V: SIP/2.0/TCP sip31.example.com
Via: SIP/2.0/TCP sip30.example.com
ViA: SIP/2.0/TCP sip29.example.com
VIa: SIP/2.0/TCP sip28.example.com
VIA: SIP/2.0/TCP sip27.example.com
via: SIP/2.0/TCP sip26.example.com
viA: SIP/2.0/TCP sip25.example.com
vIa: SIP/2.0/TCP sip24.example.com
vIA: SIP/2.0/TCP sip23.example.com
V :  SIP/2.0/TCP sip22.example.com
v :  SIP/2.0/TCP sip21.example.com
V  : SIP/2.0/TCP sip20.example.com
v  : SIP/2.0/TCP sip19.example.com
Via : SIP/2.0/TCP sip18.example.com
Via  : SIP/2.0/TCP sip17.example.com
Via: SIP/2.0/TCP sip16.example.com
Via: SIP/2.0/TCP sip15.example.com
Via: SIP/2.0/TCP sip14.example.com
Via: SIP/2.0/TCP sip13.example.com
Via: SIP/2.0/TCP sip12.example.com
Via: SIP/2.0/TCP sip11.example.com
Via: SIP/2.0/TCP sip10.example.com
Via: SIP/2.0/TCP sip9.example.com
Via: SIP/2.0/TCP sip8.example.com
Via: SIP/2.0/TCP sip7.example.com
Via: SIP/2.0/TCP sip6.example.com
Via: SIP/2.0/TCP sip5.example.com
Via: SIP/2.0/TCP sip4.example.com
Via: SIP/2.0/TCP sip3.example.com
Via: SIP/2.0/TCP sip2.example.com
Via: SIP/2.0/TCP sip1.example.com
Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongbranchvalue
Max-Forwards: 70
Contact: <sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername@host5.example.net>
Content-Type: application/sdp
l: 150

{SDP_150}"#
            )),
            start: Ok(("INVITE", "sip:user@example.com")),
            call_id: "longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid",
            cseq: (3882340, "INVITE"),
            vias: 34,
            from_tag: Some("12982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982424"),
            to_tag: None,
            content_length: Some(150),
            extra: |m| {
                let h = m.headers();
                let to = h.to().unwrap();
                assert!(to.display_name.as_deref().unwrap().starts_with("I have a user name of extreme"));
                let tu = to.uri.as_sip().unwrap();
                assert_eq!(tu.port, Some(6000));
                assert_eq!(tu.params.len(), 3);
                let from = h.from().unwrap();
                assert_eq!(from.params.len(), 3);
                let vias = h.vias().unwrap();
                for (i, v) in vias[..33].iter().enumerate() {
                    assert_eq!(v.host, Host::Domain(format!("sip{}.example.com", 33 - i)));
                    assert!(v.params.is_empty());
                }
                assert_eq!(vias[33].received(), Some("192.0.2.5"));
                assert!(vias[33].branch().unwrap().ends_with("longbranchvalue"));
            },
        },
        Valid {
            section: "3.1.1.8 Extra Trailing Octets in a UDP Datagram",
            bytes: wire(
                "REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0

INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.15
s=-
c=IN IP4 192.0.2.15
t=0 0
m=audio 49217 RTP/AVP 0 12
m =video 3227 RTP/AVP 31
a=rtpmap:31 LPC
",
            ),
            start: Ok(("REGISTER", "sip:example.com")),
            call_id: "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
            cseq: (8, "REGISTER"),
            vias: 1,
            from_tag: Some("43251j3j324"),
            to_tag: None,
            content_length: Some(0),
            extra: |m| {
                let raw = m.raw().unwrap();
                assert!(raw.ends_with(b"Content-Length: 0\r\n\r\n"), "trailing INVITE is not part of the message");
                let Contacts::List(c) = m.headers().contacts().unwrap() else { panic!() };
                assert_eq!(c[0].uri.as_sip().unwrap().host, Host::Domain("host.example.com".into()));
            },
        },
        Valid {
            section: "3.1.1.9 Semicolon-Separated Parameters in URI User Part",
            bytes: wire(
                "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

",
            ),
            start: Ok(("OPTIONS", "sip:user;par=u%40example.net@example.com")),
            call_id: "semiuri.0ha0isndaksdj",
            cseq: (8, "OPTIONS"),
            vias: 1,
            from_tag: Some("33242"),
            to_tag: None,
            content_length: Some(0),
            extra: |m| {
                let Uri::Sip(ruri) = &request(m).uri else { panic!() };
                assert_eq!(ruri.user_decoded().unwrap(), b"user;par=u@example.net");
                assert!(ruri.params.is_empty());
                assert_eq!(
                    m.headers().values("Accept"),
                    vec![
                        "application/sdp",
                        "application/pkcs7-mime",
                        "multipart/mixed",
                        "multipart/signed",
                        "message/sip",
                        "message/sipfrag"
                    ]
                );
            },
        },
        Valid {
            section: "3.1.1.10 Varied and Unknown Transport Types",
            bytes: wire(
                "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

",
            ),
            start: Ok(("OPTIONS", "sip:user@example.com")),
            call_id: "transports.kijh4akdnaqjkwendsasfdj",
            cseq: (60, "OPTIONS"),
            vias: 5,
            from_tag: Some("323"),
            to_tag: None,
            content_length: Some(0),
            extra: |m| {
                let t: Vec<_> = m.headers().vias().unwrap().into_iter().map(|v| v.transport).collect();
                assert_eq!(t, vec!["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
            },
        },
        Valid {
            section: "3.1.1.11 Multipart MIME Message",
            bytes: mpart01(),
            start: Ok(("MESSAGE", "sip:kumiko@example.org")),
            call_id: "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
            cseq: (1, "MESSAGE"),
            vias: 1,
            from_tag: Some("2fb0dcc9"),
            to_tag: None,
            content_length: Some(553),
            extra: |m| {
                let h = m.headers();
                let via = &h.vias().unwrap()[0];
                assert_eq!(via.port, Some(5070));
                assert_eq!(via.rport(), Some(RPort::Requested));
                assert_eq!(h.routes().unwrap()[0].uri.as_sip().unwrap().port, Some(5080));
                assert_eq!(h.content_type(), Some("multipart/mixed;boundary=7a9cbec02ceef655"));
                assert_eq!(h.values("Date"), vec!["Sat, 15 Oct 2005 04:44:56 GMT"]);
                assert!(m.body().contains(&0));
                assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
            },
        },
        Valid {
            section: "3.1.1.12 Unusual Reason Phrase",
            bytes: wire(&format!(
                "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>

{}",
                SDP_150.replace("192.0.2.1", "192.0.2.198")
            )),
            start: Err(200),
            call_id: "unreason.1234ksdfak3j2erwedfsASdf",
            cseq: (35, "INVITE"),
            vias: 1,
            from_tag: Some("11141343"),
            to_tag: Some("2229"),
            content_length: Some(154),
            extra: |m| {
                let SipMessage::Response(r) = m else { panic!() };
                assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
            },
        },
        Valid {
            section: "3.1.1.13 Empty Reason Phrase",
            bytes: wire(
                "SIP/2.0 100 
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

",
            ),
            start: Err(100),
            call_id: "noreason.asndj203insdf99223ndf",
            cseq: (35, "INVITE"),
            vias: 1,
            from_tag: Some("39ansfi3"),
            to_tag: Some("902jndnke3"),
            content_length: Some(0),
            extra: |m| {
                let SipMessage::Response(r) = m else { panic!() };
                assert_eq!(r.reason, "");
            },
        },
    ]
}

fn request(m: &SipMessage) -> &siprtmp_core::sip::Request {
    match m {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("expected a request"),
    }
}

/// `%HH` decoding for assertions (mirrors what `SipUri::user_decoded` does for users).
fn percent(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn check_valid(case: &Valid, m: &SipMessage) {
    let s = case.section;
    match (case.start, m) {
        (Ok((method, ruri)), SipMessage::Request(r)) => {
            assert_eq!(r.method.as_str(), method, "{s}");
            assert_eq!(r.uri.to_string().to_lowercase(), ruri.to_lowercase(), "{s}");
            assert_eq!(r.version, "SIP/2.0", "{s}");
        }
        (Err(status), SipMessage::Response(r)) => assert_eq!(r.status, status, "{s}"),
        _ => panic!("{s}: wrong message kind"),
    }
    let h = m.headers();
    assert_eq!(h.call_id().unwrap(), case.call_id, "{s}");
    let cseq = h.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method.as_str()), case.cseq, "{s}");
    assert_eq!(h.vias().unwrap().len(), case.vias, "{s}");
    assert_eq!(h.from().unwrap().tag(), case.from_tag, "{s}");
    assert_eq!(h.to().unwrap().tag(), case.to_tag, "{s}");
    assert_eq!(h.content_length().unwrap(), case.content_length, "{s}");
    if let Some(cl) = case.content_length {
        assert_eq!(m.body().len(), cl, "{s}: body length");
    }
    (case.extra)(m);
}

#[test]
fn rfc4475_valid_messages_parse() {
    for case in valid_cases() {
        let m = parse_datagram(&case.bytes)
            .unwrap_or_else(|e| panic!("{}: rejected: {e}", case.section));
        check_valid(&case, &m);

        // Forwarding unchanged reproduces the message bytes (trailing datagram junk aside).
        let wire_bytes = m.wire_bytes();
        assert!(case.bytes.starts_with(&wire_bytes), "{}", case.section);
        assert_eq!(wire_bytes.len(), case.bytes.len().min(wire_bytes.len()));

        // Re-serialising and re-parsing gives the same message.
        let again = parse_datagram(&m.to_bytes())
            .unwrap_or_else(|e| panic!("{}: re-serialised form rejected: {e}", case.section));
        check_valid(&case, &again);
        assert_eq!(again.headers(), m.headers(), "{}", case.section);
        assert_eq!(again.body(), m.body(), "{}", case.section);
    }
}

#[test]
fn rfc4475_valid_messages_frame_on_a_stream() {
    for case in valid_cases() {
        // Two copies back to back, with a keep-alive in between, fed in odd-sized chunks.
        let one = parse_datagram(&case.bytes).unwrap().wire_bytes();
        let mut stream = one.to_vec();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(&one);
        for chunk in [1, 7, 64, stream.len()] {
            let mut framer = StreamFramer::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(m) = framer.push(&mut buf).unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 2, "{} chunk {chunk}", case.section);
            for m in &got {
                check_valid(&case, m);
                assert_eq!(m.raw().unwrap(), &one);
            }
        }
    }
}

/// What this layer does with an RFC 4475 message that is not plainly valid.
enum Outcome {
    /// Rejected by the parser with an error matching the predicate.
    Rejected(fn(&SipError) -> bool),
    /// Accepted here, with the reason why that is right for the message layer, and checks
    /// on what the accessors report.
    Accepted(&'static str, fn(&SipMessage)),
}

fn bad_header(name: &'static str) -> impl Fn(&SipError) -> bool {
    move |e| matches!(e, SipError::BadHeader { name: n, .. } if n == name)
}

fn other_cases() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    use Outcome::*;
    vec![
        (
            "3.1.2.1 Extraneous Header Field Separators",
            wire(&format!(
                r#"INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: 152
Content-Type: application/sdp

{}"#,
                SDP_150.replace("192.0.2.1", "192.0.2.15")
            )),
            Rejected(|e| bad_header("Via")(e)),
        ),
        (
            "3.1.2.2 Content Length Larger Than Message",
            wire(&format!(
                "INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

{}",
                SDP_150.replace("192.0.2.1", "192.0.2.155")
            )),
            Rejected(|e| matches!(e, SipError::TruncatedBody { declared: 9999, .. })),
        ),
        (
            "3.1.2.3 Negative Content-Length",
            wire(&format!(
                "INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

{}",
                SDP_150.replace("192.0.2.1", "192.0.2.53")
            )),
            Rejected(|e| *e == SipError::InvalidContentLength),
        ),
        (
            "3.1.2.4 Request Scalar Fields with Overlarge Values",
            wire(
                "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
Contact: <sip:user@host129.example.com>
  ;expires=280297596632815
Content-Length: 0

",
            ),
            Rejected(|e| bad_header("CSeq")(e)),
        ),
        (
            "3.1.2.5 Response Scalar Fields with Overlarge Values",
            wire(
                r#"SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0

"#,
            ),
            // Retry-After and Warning are opaque at this layer; the CSeq overflow is caught.
            Rejected(|e| bad_header("CSeq")(e)),
        ),
        (
            "3.1.2.6 Unterminated Quoted String in Display Name",
            wire(&format!(
                r#"INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: 152

{}"#,
                SDP_150.replace("192.0.2.1", "192.0.2.15")
            )),
            Rejected(|e| bad_header("To")(e)),
        ),
        (
            "3.1.2.7 <> Enclosing Request-URI",
            wire(&format!(
                "INVITE <sip:user@example.com> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/UDP 192.0.2.5
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 159

{}",
                SDP_150.replace("192.0.2.1", "192.0.2.5").replace("t=0 0", "t=3149328700 0")
            )),
            Rejected(|e| matches!(e, SipError::BadUri(_))),
        ),
        (
            "3.1.2.8 Malformed SIP Request-URI (embedded LWS)",
            wire(&format!(
                "INVITE sip:user@example.com; lr SIP/2.0
To: sip:user@example.com;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423
CSeq: 2130706432 INVITE
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 159

{}",
                SDP_150.replace("t=0 0", "t=3149328700 0")
            )),
            Rejected(|e| matches!(e, SipError::BadStartLine(_))),
        ),
        (
            "3.1.2.9 Multiple SP Separating Request-Line Elements",
            wire(&format!(
                "INVITE  sip:user@example.com  SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.net;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com
CSeq: 1893884 INVITE
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 150

{SDP_150}"
            )),
            Rejected(|e| matches!(e, SipError::BadStartLine(_))),
        ),
        (
            "3.1.2.10 SP Characters at End of Request-Line",
            wire(
                "OPTIONS sip:remote-target@example.com SIP/2.0  
Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093
To: <sip:remote-target@example.com>
From: <sip:local-resource@example.com>;tag=329429089
Call-ID: trws.oicu34958239neffasdhr2345r
Accept: application/sdp
CSeq: 238923 OPTIONS
Max-Forwards: 70
Content-Length: 0

",
            ),
            Rejected(|e| matches!(e, SipError::BadStartLine(_))),
        ),
        (
            "3.1.2.11 Escaped Headers in SIP Request-URI",
            wire(&format!(
                "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 149209342 INVITE
Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw
Content-Type: application/sdp
Content-Length: 150

{SDP_150}"
            )),
            Rejected(|e| matches!(e, SipError::BadStartLine(_))),
        ),
        (
            "3.1.2.12 Invalid Time Zone in Date Header Field",
            wire(&format!(
                "INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 150

{}",
                SDP_150.replace("192.0.2.1", "192.0.2.5")
            )),
            Accepted(
                "semantic: the message layer keeps Date opaque (nothing in this stack reads it), \
                 and RFC 4475 itself says an element should not reject over Date unless it uses it",
                |m| {
                    assert_eq!(m.headers().values("Date"), vec!["Fri, 01 Jan 2010 16:00:00 EST"]);
                    assert_eq!(m.body().len(), 150);
                },
            ),
        ),
        (
            "3.1.2.13 Failure to Enclose name-addr URI in <>",
            wire(
                "REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E
l: 0

",
            ),
            Rejected(|e| bad_header("Contact")(e)),
        ),
        (
            "3.1.2.14 Spaces within addr-spec",
            wire(
                r#"OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

"#,
            ),
            Rejected(|e| bad_header("To")(e)),
        ),
        (
            "3.1.2.15 Non-token Characters in Display Name",
            wire(
                "OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0

",
            ),
            Rejected(|e| bad_header("From")(e)),
        ),
        (
            "3.1.2.16 Unknown Protocol Version",
            wire(
                "OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0

",
            ),
            Rejected(|e| *e == SipError::UnsupportedVersion("SIP/7.0".into())),
        ),
        (
            "3.1.2.17 Start Line and CSeq Method Mismatch",
            wire(
                "OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0

",
            ),
            Rejected(|e| *e == SipError::CSeqMethodMismatch),
        ),
        (
            "3.1.2.18 Unknown Method with CSeq Method Mismatch",
            wire(
                "NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: 138

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
c=IN IP4 192.0.2.1
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
",
            ),
            Rejected(|e| *e == SipError::CSeqMethodMismatch),
        ),
        (
            "3.1.2.19 Overlarge Response Code",
            wire(
                "SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

",
            ),
            Rejected(|e| matches!(e, SipError::BadStartLine(_))),
        ),
        // ---- 3.2 - 3.4: syntactically valid, torture is above the parser ----
        (
            "3.2.1 Missing Transaction Identifier",
            wire(
                "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK
Accept: application/sdp
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
l: 0

",
            ),
            Accepted("transaction layer decides what a bare magic cookie means", |m| {
                assert_eq!(m.headers().vias().unwrap()[0].branch(), Some("z9hG4bK"));
            }),
        ),
        (
            "3.3.1 Missing Required Header Fields",
            wire(&format!(
                "INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 152

{}",
                SDP_150.replace("192.0.2.1", "192.0.2.95")
            )),
            Accepted("a missing From/To/Call-ID is the application's 400", |m| {
                let h = m.headers();
                assert_eq!(h.from(), Err(SipError::MissingHeader("From")));
                assert_eq!(h.to(), Err(SipError::MissingHeader("To")));
                assert_eq!(h.call_id(), Err(SipError::MissingHeader("Call-ID")));
                assert_eq!(h.max_forwards(), Ok(None));
            }),
        ),
        (
            "3.3.2 Request-URI with Unknown Scheme",
            wire(
                "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

",
            ),
            Accepted("unknown schemes are opaque URIs; 416 is the application's call", |m| {
                assert_eq!(
                    request(m).uri,
                    Uri::Other("nobodyKnowsThisScheme:totallyopaquecontent".into())
                );
            }),
        ),
        (
            "3.3.3 Request-URI with Known but Atypical Scheme",
            wire(
                "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

",
            ),
            Accepted("opaque URI", |m| {
                assert_eq!(request(m).uri.scheme(), "soap.beep");
            }),
        ),
        (
            "3.3.4 Unknown URI Schemes in Header Fields",
            wire(
                "REGISTER sip:example.com SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: unksm2.daksdj@hyphenated-host.example.com
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0

",
            ),
            Accepted("opaque URIs in name-addr and addr-spec", |m| {
                let h = m.headers();
                assert_eq!(h.to().unwrap().uri, Uri::Other("isbn:2983792873".into()));
                let from = h.from().unwrap();
                assert_eq!(from.uri, Uri::Other("http://www.example.com".into()));
                assert_eq!(from.tag(), Some("3234233"));
                let Contacts::List(c) = h.contacts().unwrap() else { panic!() };
                assert_eq!(c[0].uri, Uri::Other("name:John_Smith".into()));
            }),
        ),
        (
            "3.3.5 Proxy-Require and Require",
            wire(
                "OPTIONS sip:user@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw
Content-Length: 0

",
            ),
            Accepted("420 is the application's call", |m| {
                assert_eq!(
                    m.headers().values("proxy-require"),
                    vec!["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
                );
            }),
        ),
        (
            "3.3.6 Unknown Content-Type",
            wire(
                r#"INVITE sip:user@example.com SIP/2.0
Contact: <sip:caller@host5.example.net>
To: sip:j.user@example.com
From: sip:caller@example.net;tag=8392034
Max-Forwards: 70
Call-ID: invut.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw
Content-Type: application/unknownformat
Content-Length: 40

<audio>
 <pcmu port="443"/>
</audio>
"#,
            ),
            Accepted("415 is the application's call", |m| {
                assert_eq!(m.body().len(), 40);
                assert_eq!(m.headers().content_type(), Some("application/unknownformat"));
            }),
        ),
        (
            "3.3.7 Unknown Authorization Scheme",
            wire(
                "REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=87321hj23128
Max-Forwards: 8
Call-ID: regaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length:0

",
            ),
            Accepted("authorization is above this layer", |m| {
                assert_eq!(
                    m.headers().values("Authorization"),
                    vec!["NoOneKnowsThisScheme opaque-data=here"]
                );
            }),
        ),
        (
            "3.3.8 Multiple Values in Single Value Required Fields",
            wire(&format!(
                "INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: 154
Contact: <sip:caller@host36.example.net>
Max-Forwards: 5

{}
",
                SDP_150.replace("192.0.2.1", "192.0.2.25")
            )),
            Accepted(
                "each value is well-formed; duplicates are visible via get_all for the \
                 application's 400 (typed accessors read the first)",
                |m| {
                    let h = m.headers();
                    assert_eq!(h.get_all("Call-ID").count(), 2);
                    assert_eq!(h.get_all("CSeq").count(), 2);
                    assert_eq!(h.cseq().unwrap().seq, 5);
                    assert_eq!(h.from().unwrap().tag(), Some("3413415"));
                },
            ),
        ),
        (
            "3.3.9 Multiple Content-Length Values",
            wire(
                "OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.
",
            ),
            // Framing is this layer's job, and it cannot be done.
            Rejected(|e| *e == SipError::ConflictingContentLength),
        ),
        (
            "3.3.10 200 OK Response with Broadcast Via Header Field Value",
            wire(&format!(
                "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23
Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host28.example.com>

{}",
                SDP_150.replace("192.0.2.1", "192.0.2.198")
            )),
            Accepted("where (not) to send is the transport layer's concern", |m| {
                assert_eq!(
                    m.headers().vias().unwrap()[1].host,
                    Host::Ipv4("255.255.255.255".parse().unwrap())
                );
            }),
        ),
        (
            "3.3.11 Max-Forwards of Zero",
            wire(
                "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=3ghsd41
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
Content-Length: 0

",
            ),
            Accepted("483 or local answer is the application's call", |m| {
                assert_eq!(m.headers().max_forwards(), Ok(Some(0)));
            }),
        ),
        (
            "3.3.12 REGISTER with a Contact Header Parameter",
            wire(
                "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe
To: sip:watson@example.com
Call-ID: cparam01.70710@saturn.example.com
CSeq: 2 REGISTER
Contact: sip:+19725552222@gw1.example.net;unknownparam
l: 0

",
            ),
            Accepted("addr-spec: the parameter belongs to the header", |m| {
                let Contacts::List(c) = m.headers().contacts().unwrap() else { panic!() };
                assert_eq!(c[0].params.get("unknownparam"), Some(None));
                assert!(c[0].uri.as_sip().unwrap().params.is_empty());
            }),
        ),
        (
            "3.3.13 REGISTER with a url-parameter",
            wire(
                "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=838293
To: sip:watson@example.com
Call-ID: cparam02.70710@saturn.example.com
CSeq: 3 REGISTER
Contact: <sip:+19725552222@gw1.example.net;unknownparam>
l: 0

",
            ),
            Accepted("name-addr: the parameter belongs to the URI", |m| {
                let Contacts::List(c) = m.headers().contacts().unwrap() else { panic!() };
                assert!(c[0].params.is_empty());
                assert_eq!(c[0].uri.as_sip().unwrap().params.get("unknownparam"), Some(None));
            }),
        ),
        (
            "3.3.14 REGISTER with a URL Escaped Header",
            wire(
                "REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=8
Max-Forwards: 70
Call-ID: regescrt.k345asrl3fdbv@192.0.2.1
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>
L:0

",
            ),
            Accepted("URI headers are legal inside <> in Contact", |m| {
                let Contacts::List(c) = m.headers().contacts().unwrap() else { panic!() };
                assert_eq!(
                    c[0].uri.as_sip().unwrap().headers,
                    vec![("Route".to_string(), "%3Csip:sip.example.com%3E".to_string())]
                );
            }),
        ),
        (
            "3.3.15 Unacceptable Accept Offering",
            wire(&format!(
                "INVITE sip:user@example.com SIP/2.0
To: sip:j_user@example.com
Contact: <sip:caller@host15.example.net>
From: sip:caller@example.net;tag=234
Max-Forwards: 5
Call-ID: sdp01.ndaksdj9342dasdd
Accept: text/nobodyKnowsThis
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
Content-Length: 150
Content-Type: application/sdp

{}",
                SDP_150.replace("192.0.2.1", "192.0.2.5")
            )),
            Accepted("406 is the application's call", |m| {
                assert_eq!(m.headers().values("Accept"), vec!["text/nobodyKnowsThis"]);
            }),
        ),
        (
            "3.4.1 INVITE with RFC 2543 Syntax",
            wire(
                "INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP iftgw.example.com
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: inv2543.1717@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
",
            ),
            Accepted(
                "RFC 2543 elements (no branch, no Max-Forwards, no tags) are the transaction \
                 layer's business; without Content-Length a datagram's body is the rest of it",
                |m| {
                    let h = m.headers();
                    assert_eq!(h.vias().unwrap()[0].branch(), None);
                    assert_eq!(h.to().unwrap().params.value("user"), Some("phone"));
                    assert_eq!(h.content_length(), Ok(None));
                    assert!(m.body().starts_with(b"v=0\r\n"));
                    assert!(m.body().ends_with(b"RTP/AVP 0\r\n"));
                },
            ),
        ),
    ]
}

#[test]
fn rfc4475_invalid_and_semantic_messages() {
    let cases = other_cases();
    assert_eq!(
        cases.iter().filter(|c| c.0.starts_with("3.1.2.")).count(),
        19
    );
    for (section, bytes, outcome) in cases {
        let result = parse_datagram(&bytes);
        match outcome {
            Outcome::Rejected(matches) => match result {
                Ok(_) => panic!("{section}: accepted but must be rejected"),
                Err(e) => assert!(matches(&e), "{section}: rejected with unexpected {e:?}"),
            },
            Outcome::Accepted(reason, check) => {
                let m = result.unwrap_or_else(|e| panic!("{section}: rejected ({e}) but {reason}"));
                check(&m);
            }
        }
    }
}

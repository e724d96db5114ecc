//! The policy's rules and checks, address by address.

use super::*;
use crate::error::Error;

fn rule(text: &str) -> Rule {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn policy(rules: &[&str]) -> Policy {
    let mut p = Policy::new();
    for r in rules {
        p.allow(rule(r));
    }
    p
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn denied_name(p: &Policy, host: &str, port: u16) -> String {
    match p.check_name(host, port) {
        Ok(()) => panic!("{host}:{port} allowed"),
        Err(e) => e.to_string(),
    }
}

fn denied_addr(p: &Policy, a: &str) -> String {
    match p.check_addr(addr(a)) {
        Ok(()) => panic!("{a} allowed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_form_parses_and_round_trips() {
    // (text, canonical display)
    let cases = [
        ("echo.example.com:443", "echo.example.com:443"),
        ("echo.example.com:*", "echo.example.com:*"),
        ("*.example.com:443", "*.example.com:443"),
        ("*.example.com:*", "*.example.com:*"),
        ("*:443", "*:443"),
        ("*:*", "*:*"),
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("192.0.2.7:443", "192.0.2.7:443"),
        ("192.0.2.7:*", "192.0.2.7"),
        ("[2001:db8::1]:443", "[2001:db8::1]:443"),
        ("[2001:db8::1]:*", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("fd00::/8", "fd00::/8"),
        ("10.0.0.0/8:5432", "10.0.0.0/8:5432"),
        ("[fd00::/8]:443", "[fd00::/8]:443"),
        ("10.0.0.0/8:*", "10.0.0.0/8"),
        ("::1/128", "::1"),
        ("192.0.2.7/32", "192.0.2.7"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::/0", "::/0"),
        ("_sip._tcp.example.com:5060", "_sip._tcp.example.com:5060"),
        // Normalised: case, trailing dot, surrounding whitespace.
        ("  Echo.Example.COM.:443\n", "echo.example.com:443"),
        ("*.Example.com.:*", "*.example.com:*"),
        ("192.0.2.7.:443", "192.0.2.7:443"),
        // IPv4-mapped: the IPv4 address.
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ];
    for (text, canonical) in cases {
        let r = rule(text);
        assert_eq!(r.to_string(), canonical, "{text}");
        assert_eq!(rule(canonical), r, "{text} round trip");
        assert_eq!(rule(&r.to_string()).to_string(), canonical, "{text} display is stable");
    }
}

#[test]
fn bad_rules_name_the_text() {
    // (text, what the message must contain besides the text)
    let cases = [
        ("example.com", "`example.com:443` or `example.com:*`"),
        ("*.example.com", "needs a port"),
        ("*", "`*:443` or `*:*`"),
        ("example.com:0", "port 0"),
        ("example.com:70000", "port 70000"),
        ("example.com:99999999999999999999", "out of range"),
        ("example.com:https", "not a number"),
        ("example.com:+443", "not a number"),
        ("example.com:", "no port"),
        ("a.*.example.com:443", "first label"),
        // Unwrapped like a mapped network, it would be 0.0.0.0/0.
        ("64:ff9b::/96", "write the IPv4 rule"),
        ("[64:ff9b::7f00:1]:443", "write the IPv4 rule"),
        ("*example.com:443", "first label"),
        ("example.*:443", "first label"),
        ("10.0.0.1/8", "`10.0.0.0/8`"),
        ("[fd00::1/8]:443", "`[fd00::/8]:443`"),
        ("10.0.0.0/33", "/33"),
        ("fd00::/129", "/129"),
        ("10.0.0.0/", "not a prefix length"),
        ("10.0.0.0/x", "not a prefix length"),
        ("300.0.0.0/8", "not an IP address"),
        ("fd00::/8:443", "`[fd00::/8]:443`"),
        ("[::1", "closing `]`"),
        ("[::1]443", "after `]`"),
        ("[192.0.2.7]:443", "IPv6 only"),
        ("[example.com]:443", "IPv6 only"),
        ("2001:db8::g:443", "brackets"),
        ("exa mple.com:443", "whitespace"),
        ("garbage!", "not a DNS name"),
        ("ex$mple.com:443", "not a DNS name"),
        ("a..b:443", "not a DNS name"),
        (".:443", "not a DNS name"),
        ("-:-", "not a number"),
    ];
    for (text, want) in cases {
        let e = text.parse::<Rule>().expect_err(text).to_string();
        assert!(e.contains(&format!("`{text}`")), "{text}: {e}");
        assert!(e.contains(want), "{text}: {e}");
    }
    let long_label = format!("{}.com:443", "a".repeat(64));
    assert!(long_label.parse::<Rule>().is_err());
    // 253 bytes is the longest name; a trailing dot does not count.
    let longest = format!("{}com", "abcdefghi.".repeat(25));
    assert_eq!(longest.len(), 253);
    assert!(format!("{longest}.:443").parse::<Rule>().is_ok());
    assert!(format!("x{longest}:443").parse::<Rule>().is_err());
    let e = "".parse::<Rule>().unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    assert!("   ".parse::<Rule>().unwrap_err().to_string().contains("empty"));
}

#[test]
fn name_rules_match_name_and_port() {
    let p = policy(&["echo.example.com:443", "any.example.com:*", "*.example.net:8443"]);
    assert!(p.check_name("echo.example.com", 443).is_ok());
    assert!(p.check_name("echo.example.com", 80).is_err());
    assert!(p.check_name("other.example.com", 443).is_err());
    assert!(p.check_name("any.example.com", 1).is_ok());
    assert!(p.check_name("any.example.com", 65535).is_ok());
    // Subdomains at any depth, but not the apex or a look-alike.
    assert!(p.check_name("a.example.net", 8443).is_ok());
    assert!(p.check_name("a.b.c.example.net", 8443).is_ok());
    assert!(p.check_name("a.example.net", 443).is_err());
    assert!(p.check_name("example.net", 8443).is_err());
    assert!(p.check_name("badexample.net", 8443).is_err());
    assert!(p.check_name("example.net.evil", 8443).is_err());
    // No rule for names is an IP rule in disguise.
    assert!(policy(&["10.0.0.0/8"]).check_name("example.com", 443).is_err());
}

#[test]
fn any_rule_matches_every_name() {
    let p = policy(&["*:443"]);
    assert!(p.check_name("example.com", 443).is_ok());
    assert!(p.check_name("localhost", 443).is_ok());
    assert!(p.check_name("example.com", 80).is_err());
    assert!(policy(&["*:*"]).check_name("example.com", 80).is_ok());
    // Only names DNS could answer for.
    let e = denied_name(&policy(&["*:*"]), "exa mple.com", 443);
    assert!(e.contains("not a valid host name"), "{e}");
    assert!(policy(&["*:*"]).check_name("", 443).is_err());
}

#[test]
fn names_ignore_case_and_one_trailing_dot() {
    let p = policy(&["Echo.Example.com:443", "*.example.net:*"]);
    assert!(p.check_name("ECHO.example.COM", 443).is_ok());
    assert!(p.check_name("echo.example.com.", 443).is_ok());
    assert!(p.check_name("A.Example.NET.", 443).is_ok());
    assert!(p.check_name("echo.example.com..", 443).is_err());
}

#[test]
fn ip_literal_needs_an_ip_rule_or_any() {
    let names = policy(&["example.com:443", "*.example.com:*"]);
    let e = denied_name(&names, "8.8.8.8", 443);
    assert_eq!(
        e,
        "no allow rule matches `8.8.8.8:443` (the policy allows: example.com:443, *.example.com:*)"
    );
    let e = denied_name(&names, "2001:4860::8888", 443);
    assert!(e.contains("`[2001:4860::8888]:443`"), "{e}");

    assert!(policy(&["*:443"]).check_name("8.8.8.8", 443).is_ok());
    assert!(policy(&["*:443"]).check_name("8.8.8.8", 80).is_err());
    assert!(policy(&["*:*"]).check_name("2001:4860::8888", 80).is_ok());
    assert!(policy(&["8.8.8.8"]).check_name("8.8.8.8", 80).is_ok());
    assert!(policy(&["8.8.0.0/16:53"]).check_name("8.8.4.4", 53).is_ok());
    assert!(policy(&["8.8.0.0/16:53"]).check_name("8.8.4.4", 443).is_err());
    assert!(
        policy(&["[2001:4860::/32]:443"])
            .check_name("2001:4860::8888", 443)
            .is_ok()
    );
    // A trailing dot does not turn a literal into a name.
    assert!(policy(&["*:*"]).check_name("127.0.0.1.", 80).is_err());
    // A mapped public literal is its IPv4 address.
    assert!(policy(&["8.8.8.8"]).check_name("::ffff:8.8.8.8", 443).is_ok());
}

#[test]
fn special_literal_needs_an_ip_rule() {
    let any = policy(&["*:*"]);
    let e = denied_name(&any, "127.0.0.1", 8080);
    assert_eq!(
        e,
        concat!(
            "127.0.0.1 is a loopback address: only an IP or CIDR rule allows it ",
            "(e.g. `127.0.0.0/8`, or --allow-private)"
        )
    );
    assert!(denied_name(&any, "::1", 8080).contains("loopback"));
    assert!(denied_name(&any, "::ffff:127.0.0.1", 8080).contains("loopback"));
    // NAT64's well-known prefix reaches the IPv4 address it embeds.
    assert_eq!(
        denied_name(&any, "64:ff9b::a9fe:a9fe", 80),
        concat!(
            "64:ff9b::a9fe:a9fe is a link-local address (NAT64 for 169.254.169.254): ",
            "only an IP or CIDR rule allows it (e.g. `169.254.0.0/16`, or --allow-private)"
        )
    );
    assert!(
        any.check_name("64:ff9b::808:808", 53).is_ok(),
        "a public address through NAT64"
    );

    let mut private = Policy::new();
    private.allow_private();
    assert!(private.check_name("127.0.0.1", 8080).is_ok());
    assert!(private.check_name("::1", 8080).is_ok());
    assert!(private.check_name("10.1.2.3", 5432).is_ok());
    // The private rules are IP rules: they allow no name and no public
    // literal.
    assert!(private.check_name("localhost", 8080).is_err());
    assert!(private.check_name("8.8.8.8", 53).is_err());
}

#[test]
fn special_addresses_are_denied_by_any() {
    let any = policy(&["*:*"]);
    let cases = [
        ("127.0.0.1:443", "loopback", "`127.0.0.0/8`"),
        ("[::1]:443", "loopback", "`::1`"),
        ("169.254.169.254:80", "link-local", "`169.254.0.0/16`"),
        ("[fe80::1]:443", "link-local", "`fe80::/10`"),
        ("10.1.2.3:443", "private", "`10.0.0.0/8`"),
        ("172.31.255.255:443", "private", "`172.16.0.0/12`"),
        ("192.168.1.1:443", "private", "`192.168.0.0/16`"),
        ("100.100.100.100:443", "private", "`100.64.0.0/10`"),
        ("[fd12::1]:443", "unique-local", "`fc00::/7`"),
        ("[::]:443", "unspecified", "`::`"),
        ("0.0.0.0:443", "unspecified", "`0.0.0.0/8`"),
        ("[::ffff:127.0.0.1]:443", "loopback", "`127.0.0.0/8`"),
        ("224.0.0.1:443", "multicast", "`224.0.0.0/4`"),
        ("[ff02::1]:443", "multicast", "`ff00::/8`"),
        ("255.255.255.255:443", "broadcast", "`255.255.255.255`"),
        ("198.18.0.1:443", "reserved", "`198.18.0.0/15`"),
        ("192.0.0.8:443", "reserved", "`192.0.0.0/24`"),
        ("240.0.0.1:443", "reserved", "`240.0.0.0/4`"),
        ("[fec0::1]:443", "reserved", "`fec0::/10`"),
        ("[64:ff9b::7f00:1]:443", "loopback", "`127.0.0.0/8`"),
    ];
    for (a, class, example) in cases {
        let e = denied_addr(&any, a);
        let ip = addr(a).ip();
        assert!(e.starts_with(&format!("{ip} is ")), "{a}: {e}");
        assert!(e.contains(&format!(" {class} address")), "{a}: {e}");
        assert!(e.contains(example), "{a}: {e}");
        assert!(!e.contains('\n'), "{a}: {e}");
        // `--allow-private` is suggested only where it helps.
        let private = !matches!(class, "unspecified" | "multicast" | "broadcast" | "reserved");
        assert_eq!(e.contains("--allow-private"), private, "{a}: {e}");
    }
    let e = denied_addr(&any, "[::ffff:127.0.0.1]:443");
    assert!(
        e.starts_with("::ffff:127.0.0.1 is a loopback address (IPv4-mapped 127.0.0.1)"),
        "{e}"
    );
    assert!(denied_addr(&any, "0.0.0.0:443").starts_with("0.0.0.0 is an unspecified address"));
}

#[test]
fn public_addresses_pass_check_addr() {
    for p in [Policy::new(), policy(&["*:*"]), policy(&["example.com:443"])] {
        assert!(p.check_addr(addr("8.8.8.8:443")).is_ok());
        assert!(p.check_addr(addr("[2001:4860::8888]:443")).is_ok());
        assert!(p.check_addr(addr("[::ffff:8.8.8.8]:443")).is_ok());
        // Just outside the special ranges.
        assert!(p.check_addr(addr("172.32.0.1:443")).is_ok());
        assert!(p.check_addr(addr("100.128.0.1:443")).is_ok());
        assert!(p.check_addr(addr("1.0.0.1:443")).is_ok());
    }
}

#[test]
fn allow_private_covers_its_ranges_only() {
    let mut p = Policy::new();
    p.allow_private().allow_private();
    assert_eq!(p.rules().len(), 9, "{:?}", p.rules());
    for a in [
        "127.0.0.1:1",
        "[::1]:2",
        "10.1.2.3:3",
        "172.16.0.1:4",
        "192.168.1.1:5",
        "100.64.0.1:6",
        "169.254.169.254:80",
        "[fe80::1]:7",
        "[fd12::1]:8",
        "[::ffff:127.0.0.1]:9",
    ] {
        assert!(p.check_addr(addr(a)).is_ok(), "{a}");
    }
    for (a, class) in [
        ("0.0.0.0:80", "unspecified"),
        ("[::]:80", "unspecified"),
        ("224.0.0.1:80", "multicast"),
        ("[ff02::1]:80", "multicast"),
        ("255.255.255.255:80", "broadcast"),
    ] {
        assert!(denied_addr(&p, a).contains(class), "{a}");
    }
    // An operator who means it writes the rule.
    assert!(policy(&["224.0.0.0/4"]).check_addr(addr("224.0.0.1:5353")).is_ok());
}

#[test]
fn ip_rules_with_a_port_match_that_port_only() {
    let p = policy(&["10.0.0.0/8:5432", "[fd00::/8]:443", "127.0.0.1:8080"]);
    assert!(p.check_addr(addr("10.9.8.7:5432")).is_ok());
    assert!(p.check_addr(addr("[fd00::5]:443")).is_ok());
    assert!(p.check_addr(addr("127.0.0.1:8080")).is_ok());
    assert!(p.check_addr(addr("[::ffff:127.0.0.1]:8080")).is_ok());
    let e = denied_addr(&p, "10.9.8.7:5433");
    assert_eq!(
        e,
        "10.9.8.7 is a private address: no rule allows port 5433 on it (its rules: `10.0.0.0/8:5432`)"
    );
    assert!(denied_addr(&p, "[fd00::5]:80").contains("`[fd00::/8]:443`"));
    // Outside the network: the generic message.
    assert!(denied_addr(&p, "127.0.0.2:8080").contains("only an IP or CIDR rule"));
    assert!(denied_addr(&p, "192.168.0.1:5432").contains("private"));
    // Name rules never allow a special address, whatever the port.
    let names = policy(&["*:*", "localhost:*", "*.internal:*"]);
    assert!(names.check_addr(addr("127.0.0.1:80")).is_err());
}

#[test]
fn cidr_prefix_edges() {
    let p = policy(&["172.16.0.0/12", "fe80::/10"]);
    assert!(p.check_addr(addr("172.16.0.0:1")).is_ok());
    assert!(p.check_addr(addr("172.31.255.255:1")).is_ok());
    assert!(p.check_name("172.32.0.0", 1).is_err());
    assert!(p.check_addr(addr("[febf:ffff::1]:1")).is_ok());
    assert!(p.check_name("fec0::1", 1).is_err());
    let all = policy(&["0.0.0.0/0"]);
    assert!(all.check_addr(addr("127.0.0.1:1")).is_ok());
    assert!(all.check_name("8.8.8.8", 1).is_ok());
    // IPv6 `::/0` does not cover mapped IPv4 addresses.
    assert!(policy(&["::/0"]).check_addr(addr("[::ffff:127.0.0.1]:1")).is_err());
}

#[test]
fn messages_list_the_policy() {
    let e = denied_name(&Policy::new(), "x.example", 443);
    assert_eq!(e, "no allow rule matches `x.example:443` (the policy allows nothing)");

    let p = policy(&["echo.example.com:443", "*.example.net:*"]);
    let e = denied_name(&p, "Evil.Example.", 443);
    assert_eq!(
        e,
        "no allow rule matches `evil.example:443` (the policy allows: echo.example.com:443, *.example.net:*)"
    );

    let p = policy(&[
        "a.test:1", "b.test:2", "c.test:3", "d.test:4", "e.test:5", "f.test:6", "g.test:7",
    ]);
    let e = denied_name(&p, "x.test", 443);
    assert_eq!(
        e,
        concat!(
            "no allow rule matches `x.test:443` (the policy allows: ",
            "a.test:1, b.test:2, c.test:3, d.test:4, e.test:5, and 2 more)"
        )
    );
}

#[test]
fn policy_basics() {
    let mut p = Policy::default();
    assert!(p.is_empty());
    assert!(p.rules().is_empty());
    p.allow(rule("example.com:443"))
        .allow(rule("EXAMPLE.com.:443"))
        .allow(rule("10.0.0.0/8"));
    assert!(!p.is_empty());
    assert_eq!(p.rules(), &[rule("example.com:443"), rule("10.0.0.0/8")]);
    let e: Error = "nope".parse::<Rule>().unwrap_err().into();
    assert!(e.to_string().contains("`nope` needs a port"), "{e}");
}

#[test]
fn a_denied_address_is_counted_by_its_class() {
    let class = |a: &str| super::address_class(a.parse().unwrap());
    assert_eq!(class("127.0.0.1:443"), "loopback");
    assert_eq!(class("[::1]:443"), "loopback");
    assert_eq!(class("10.1.2.3:443"), "private");
    assert_eq!(class("[::ffff:10.1.2.3]:443"), "private");
    assert_eq!(class("169.254.169.254:80"), "link-local");
    assert_eq!(class("[fe80::1]:443"), "link-local");
    assert_eq!(class("[fd00::1]:443"), "unique-local");
    assert_eq!(class("0.0.0.0:443"), "unspecified");
    assert_eq!(class("224.0.0.1:443"), "multicast");
    assert_eq!(class("198.18.0.1:443"), "reserved");
    assert_eq!(class("8.8.8.8:443"), "public");
}

//! The chat page (`static/index.html`) in a real browser: headless Debian Chromium driven
//! through chromedriver (WebDriver), against two chat instances on one real Redis behind a
//! real nginx on loopback. Screenshots of the key moments go to `target/chat-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/test.sh`) and nginx; without them the tests fail
//! saying what to install.

mod harness;

use harness::{Options, Setup, count, joined, log_in, own, say};

/// Bug 1: logging in as another name in the same window must not leave messages going out
/// as the old user. Whatever the page offers to switch users (log out first, or the login
/// form), once it says "logged in as dave", what it sends comes from dave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_user_in_one_window_sends_as_the_user_shown() {
    let setup = Setup::start("switch-user", Options::default()).await;
    let olga = setup.observer(0, "olga").await;
    let page = setup.logged_in("alice").await;

    // Switch to dave the way the page allows it.
    let has_logout = page
        .eval("const b = document.getElementById('logout'); return !!b && !b.hidden;")
        .await;
    if has_logout == true {
        page.click("#logout").await;
        page.until(
            "logged out",
            "!document.querySelector('#login input[name=name]').disabled",
        )
        .await;
    }
    page.enter("#login input[name=name]", "dave").await;
    page.until(
        "showing dave as logged in",
        "/logged in as dave/i.test(document.body.innerText)",
    )
    .await;
    page.until("in the lobby", &joined("lobby")).await;

    say(&page, "who-sent-this").await;
    let from = olga.senders("lobby", "who-sent-this").await;
    assert_eq!(from, ["dave"], "the page says dave is logged in");
    page.close().await;
}

/// Bug 2: a message typed while the page is disconnected is not lost: it is sent once the
/// page is connected again, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_typed_while_disconnected_is_sent_after_reconnecting() {
    let mut setup = Setup::start("offline-send", Options::default()).await;
    let page = setup.logged_in("alice").await;

    // Both instances go away: the page cannot reach any.
    setup.stop(0).await;
    setup.stop(1).await;
    page.until(
        "showing the disconnection",
        "/disconnected|reconnecting|offline/i.test(document.body.innerText)",
    )
    .await;
    say(&page, "typed-while-offline").await;
    // The page says it is reconnecting, with a countdown, and that the message waits.
    page.until(
        "counting down to the next attempt",
        "document.getElementById('status').dataset.state === 'reconnecting' \
         && /reconnecting in \\d+ s/.test(document.getElementById('status').textContent)",
    )
    .await;
    page.until(
        "marking the message not sent yet",
        &own("queued", "typed-while-offline"),
    )
    .await;
    page.screenshot("offline-typed").await;

    setup.start_again(0).await;
    setup.start_again(1).await;
    page.until(
        "marking it sent, connected",
        &format!(
            "{} && document.getElementById('status').dataset.state === 'connected'",
            own("sent", "typed-while-offline")
        ),
    )
    .await;
    // Acknowledged, so never sent again: the history holds it once.
    let olga = setup.observer(1, "olga").await;
    let from = olga.senders("lobby", "typed-while-offline").await;
    assert_eq!(from, ["alice"], "sent exactly once");
    assert_eq!(count(&page.log_text().await, "typed-while-offline"), 1);
    page.screenshot("offline-sent").await;
    page.close().await;
}

/// Bug 3: after a reconnect the page shows no message twice (history is deduplicated by
/// `seq`) and is back in every room it had joined, not only the current one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnect_no_message_is_repeated_and_every_room_is_rejoined() {
    let mut setup = Setup::start("reconnect", Options::default()).await;
    let olga = setup.observer(0, "olga").await;
    let page = setup.logged_in("alice").await;
    page.enter("#join input[name=room]", "second").await;
    page.until("in the second room", &joined("second")).await;

    for room in ["lobby", "second"] {
        for i in 0..5 {
            olga.post(room, &format!("early-{room}-{i}")).await;
        }
    }
    page.until(
        "showing the early messages",
        "document.getElementById('log').textContent.includes('early-second-4') \
         && document.getElementById('log').textContent.includes('early-lobby-4')",
    )
    .await;

    // A rolling restart: whichever instance the page is on, it has to reconnect. While one
    // instance is down, olga talks on the other one.
    for i in 0..2 {
        setup.stop(i).await;
        let on_other = olga.on(&setup.instances[1 - i].url());
        on_other.post("lobby", &format!("during-lobby-{i}")).await;
        on_other.post("second", &format!("during-second-{i}")).await;
        setup.start_again(i).await;
    }
    let olga = olga.on(&setup.instances[1].url());
    olga.post("lobby", "late-lobby").await;
    olga.post("second", "late-second").await;
    page.until(
        "showing the late messages of both rooms",
        "document.getElementById('log').textContent.includes('late-lobby') \
         && document.getElementById('log').textContent.includes('late-second')",
    )
    .await;
    page.screenshot("after-restart").await;
    let log = page.log_text().await;
    for room in ["lobby", "second"] {
        let texts = (0..5)
            .map(|i| format!("early-{room}-{i}"))
            .chain((0..2).map(|i| format!("during-{room}-{i}")))
            .chain([format!("late-{room}")]);
        for text in texts {
            assert_eq!(count(&log, &text), 1, "{text} shown once; log: {log}");
        }
    }
    page.close().await;
}

/// Two users on different instances talk: each sees the other's message with its time, their
/// own marked sent, and both in the room's people; when bob logs out, alice's list drops him.
/// No console errors on either page (the favicon included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_on_different_instances_talk() {
    let setup = Setup::start("talk", Options::default()).await;
    let alice = setup.browser("alice").await;
    let bob = setup.browser("bob").await;
    alice.goto(&setup.instances[0].url()).await;
    bob.goto(&setup.instances[1].url()).await;
    log_in(&alice, "alice").await;
    log_in(&bob, "bob").await;
    let both = "[...document.querySelectorAll('#people li')].map(li => li.textContent).join(',')";
    alice
        .until(
            "listing alice and bob",
            &format!("{both} === 'alice (you),bob'"),
        )
        .await;
    bob.until(
        "listing alice and bob",
        &format!("{both} === 'alice,bob (you)'"),
    )
    .await;

    say(&alice, "hello bob").await;
    bob.until("showing alice's message", &message("alice", "hello bob"))
        .await;
    alice
        .until(
            "showing her message as sent",
            "document.querySelector('#log .msg[data-state=sent] time')",
        )
        .await;
    say(&bob, "hi alice").await;
    alice
        .until("showing bob's answer", &message("bob", "hi alice"))
        .await;
    // Every message carries the time it was sent.
    let times = alice
        .eval("return [...document.querySelectorAll('#log .msg')].every(m => m.querySelector('time[datetime]'));")
        .await;
    assert_eq!(times, true);
    let shot = alice.screenshot("conversation").await;
    let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("chat.png");
    if std::env::var_os("UPDATE_CHAT_SCREENSHOT").is_some() {
        std::fs::copy(&shot, readme).expect("update examples/chat/chat.png");
    }

    bob.click("#logout").await;
    alice
        .until("listing alice alone", &format!("{both} === 'alice (you)'"))
        .await;
    for page in [&alice, &bob] {
        assert_eq!(page.console_errors().await, Vec::<String>::new());
    }
    alice.close().await;
    bob.close().await;
}

/// A condition: the log shows a message of `from` saying `text`.
fn message(from: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#log .msg')].some(m => \
           m.querySelector('.from')?.textContent === '{from}' \
           && m.querySelector('.text')?.textContent === '{text}')"
    )
}

/// After a reload the page asks the server who is logged in and carries on (name locked,
/// rooms rejoined, the history above a divider); Log out ends the session, and a reload then
/// shows the login form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_login_and_log_out_ends_it() {
    let setup = Setup::start("reload", Options::default()).await;
    let olga = setup.observer(0, "olga").await;
    let page = setup.logged_in("alice").await;
    let locked = "document.getElementById('name').disabled \
                  && !document.getElementById('logout').hidden";
    page.until("locking the name", locked).await;
    olga.post("lobby", "before the reload").await;
    page.until(
        "showing olga's message",
        &message("olga", "before the reload"),
    )
    .await;

    page.reload().await;
    page.until(
        "logged in as alice again",
        "/Logged in as alice/.test(document.body.innerText)",
    )
    .await;
    page.until("locking the name", locked).await;
    page.until("in the lobby", &joined("lobby")).await;
    page.until(
        "showing the history above the divider",
        "(() => { const d = document.querySelector('#log .divider'); \
           const h = [...document.querySelectorAll('#log .msg.history')]; \
           return d && !d.hidden && h.some(m => m.textContent.includes('before the reload')) \
             && h.every(m => m.compareDocumentPosition(d) & Node.DOCUMENT_POSITION_FOLLOWING); })()",
    )
    .await;
    olga.post("lobby", "after the reload").await;
    page.until(
        "showing the live message",
        &message("olga", "after the reload"),
    )
    .await;
    page.screenshot("reloaded").await;

    page.click("#logout").await;
    page.until(
        "showing the login form",
        "!document.getElementById('name').disabled && document.getElementById('chat').hidden",
    )
    .await;
    page.reload().await;
    page.until(
        "still logged out after a reload",
        "!document.getElementById('name').disabled \
         && document.getElementById('chat').hidden \
         && document.getElementById('status').textContent === 'Not logged in'",
    )
    .await;
    assert_eq!(page.console_errors().await, Vec::<String>::new());
    page.close().await;
}

/// Too fast: the message is not sent, the page says when to retry and keeps the text. Too
/// long: refused before sending, with the text kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_and_too_long_messages_keep_their_text() {
    let options = Options {
        rate: tower_scale_ratelimit::Quota::per_minute(2),
    };
    let setup = Setup::start("limits", options).await;
    let page = setup.logged_in("alice").await;
    for text in ["one", "two"] {
        say(&page, text).await;
        page.until(
            "showing the message as sent",
            &format!(
                "{} && document.querySelectorAll('#log .msg[data-state=sent]').length >= 1",
                message("alice", text)
            ),
        )
        .await;
    }
    say(&page, "three").await;
    page.until(
        "saying when to retry",
        "/try again in \\d+ s/i.test(document.getElementById('notice').textContent)",
    )
    .await;
    page.until(
        "keeping the text",
        "document.getElementById('text').value === 'three'",
    )
    .await;
    assert_eq!(count(&page.log_text().await, "three"), 0);
    page.screenshot("rate-limited").await;

    let long = "x".repeat(2001);
    page.enter("#send input[name=text]", &long).await;
    page.until(
        "refusing the long message",
        "/too long \\(2001 bytes, at most 2000\\)/.test(document.getElementById('notice').textContent)",
    )
    .await;
    let kept = page
        .eval("return document.getElementById('text').value.length;")
        .await;
    assert_eq!(kept, 2001);
    assert_eq!(count(&page.log_text().await, "xxxx"), 0);
    page.close().await;
}

/// Every field has a label, the log is a live region, and a person using only the keyboard
/// logs in and sends a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_use_works_and_fields_are_labelled() {
    let setup = Setup::start("keyboard", Options::default()).await;
    let olga = setup.observer(0, "olga").await;
    let page = setup.browser("kim").await;
    page.goto(&setup.base).await;
    page.until(
        "showing the login form",
        "!document.getElementById('name').disabled",
    )
    .await;
    let a11y = page
        .eval(
            "const log = document.getElementById('log'); \
             return [...document.querySelectorAll('input')].every(i => i.labels.length > 0) \
               && log.getAttribute('role') === 'log' && log.getAttribute('aria-live') === 'polite' \
               && document.getElementById('status').getAttribute('role') === 'status';",
        )
        .await;
    assert_eq!(a11y, true);

    page.tab_to("name").await;
    page.keys("kim\u{E007}").await;
    page.until("in the lobby", &joined("lobby")).await;
    page.tab_to("text").await;
    page.keys("typed with keys\u{E007}").await;
    olga.until("lobby", "showing kim's message", |seen| {
        seen.iter()
            .any(|m| m.from == "kim" && m.text == "typed with keys")
    })
    .await;
    page.tab_to("logout").await;
    page.keys("\u{E007}").await;
    page.until("logged out", "!document.getElementById('name').disabled")
        .await;
    page.close().await;
}

/// The browser goes offline (as DevTools' "Offline" does): the page says so at once, keeps
/// what is typed as not sent yet, and sends it when the network is back, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_in_the_browser_queues_and_sends_when_back() {
    let setup = Setup::start("browser-offline", Options::default()).await;
    let olga = setup.observer(0, "olga").await;
    let page = setup.logged_in("alice").await;
    page.until(
        "connected",
        "document.getElementById('status').dataset.state === 'connected'",
    )
    .await;
    page.set_offline(true).await;
    page.until(
        "saying it is offline",
        "document.getElementById('status').dataset.state === 'offline' \
         && /Offline/.test(document.getElementById('status').textContent)",
    )
    .await;
    say(&page, "written offline").await;
    page.until("marking it not sent yet", &own("queued", "written offline"))
        .await;
    page.screenshot("offline").await;
    page.set_offline(false).await;
    page.until(
        "marking it sent, connected",
        &format!(
            "{} && document.getElementById('status').dataset.state === 'connected'",
            own("sent", "written offline")
        ),
    )
    .await;
    assert_eq!(olga.senders("lobby", "written offline").await, ["alice"]);
    page.close().await;
}

/// A message waiting for the connection is kept in the tab's session storage: leaving the
/// page while both instances are down and coming back once they are up sends it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_message_survives_leaving_the_page() {
    let mut setup = Setup::start("queued-kept", Options::default()).await;
    let page = setup.logged_in("alice").await;
    setup.stop(0).await;
    setup.stop(1).await;
    say(&page, "kept across pages").await;
    page.until(
        "marking it not sent yet",
        &own("queued", "kept across pages"),
    )
    .await;
    page.goto("about:blank").await;
    setup.start_again(0).await;
    setup.start_again(1).await;
    page.goto(&setup.base).await;
    page.until("marking it sent", &own("sent", "kept across pages"))
        .await;
    let olga = setup.observer(0, "olga").await;
    assert_eq!(olga.senders("lobby", "kept across pages").await, ["alice"]);
    page.close().await;
}

/// Bug 1, across windows: after logging out and in as dave in another tab, this tab keeps
/// sending as alice on its open socket, and after the next reconnect it follows the session
/// to dave and says so; it never sends as someone it does not show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_in_another_tab_is_followed_and_said_after_a_reconnect() {
    let mut setup = Setup::start("other-tab", Options::default()).await;
    let olga = setup.observer(0, "olga").await;
    let page = setup.logged_in("alice").await;
    let first = page.client.window().await.expect("the first tab");
    let second = page.client.new_window(true).await.expect("a second tab");
    page.client
        .switch_to_window(second.handle)
        .await
        .expect("switch to the second tab");
    page.goto(&setup.base).await;
    page.until(
        "logged in as alice",
        "/Logged in as alice/.test(document.body.innerText)",
    )
    .await;
    page.click("#logout").await;
    page.until("logged out", "!document.getElementById('name').disabled")
        .await;
    log_in(&page, "dave").await;

    page.client
        .switch_to_window(first)
        .await
        .expect("back to the first tab");
    say(&page, "still-alice").await;
    page.until("marking it sent", &own("sent", "still-alice"))
        .await;
    assert_eq!(olga.senders("lobby", "still-alice").await, ["alice"]);

    for i in 0..2 {
        setup.stop(i).await;
        setup.start_again(i).await;
    }
    page.until(
        "following the session to dave, saying so",
        "/Logged in as dave/.test(document.body.innerText) \
         && /changed in another window/.test(document.getElementById('notice').textContent)",
    )
    .await;
    page.until("in the lobby", &joined("lobby")).await;
    say(&page, "now-dave").await;
    page.until("marking it sent", &own("sent", "now-dave"))
        .await;
    let olga = olga.on(&setup.instances[1].url());
    assert_eq!(olga.senders("lobby", "now-dave").await, ["dave"]);
    page.screenshot("followed").await;
    page.close().await;
}

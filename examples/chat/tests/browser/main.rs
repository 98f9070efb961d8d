//! The chat page (`static/index.html`) in a real browser: headless Debian Chromium driven
//! through chromedriver (WebDriver), against two chat instances on one real Redis behind a
//! real nginx on loopback. Screenshots of the key moments go to `target/chat-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/test.sh`) and nginx; without them the tests fail
//! saying what to install.

mod harness;

use harness::{Options, Setup, count, joined, log_in, say};

/// Bug 1: logging in as another name in the same window must not leave messages going out
/// as the old user. Whatever the page offers to switch users (log out first, or the login
/// form), once it says "logged in as dave", what it sends comes from dave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_user_in_one_window_sends_as_the_user_shown() {
    let setup = Setup::start("switch-user", Options::default()).await;
    let olga = setup.observer(0, "olga").await;
    let page = setup.browser("alice").await;
    page.goto(&setup.base).await;
    log_in(&page, "alice").await;

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
    let seen = olga
        .until("lobby", "showing the message", |seen| {
            seen.iter().any(|m| m.text == "who-sent-this")
        })
        .await;
    let from: Vec<&str> = seen
        .iter()
        .filter(|m| m.text == "who-sent-this")
        .map(|m| m.from.as_str())
        .collect();
    assert_eq!(from, ["dave"], "the page says dave is logged in");
    page.close().await;
}

/// Bug 2: a message typed while the page is disconnected is not lost: it is sent once the
/// page is connected again, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_typed_while_disconnected_is_sent_after_reconnecting() {
    let mut setup = Setup::start("offline-send", Options::default()).await;
    let page = setup.browser("alice").await;
    page.goto(&setup.base).await;
    log_in(&page, "alice").await;

    // Both instances go away: the page cannot reach any.
    setup.stop(0).await;
    setup.stop(1).await;
    page.until(
        "showing the disconnection",
        "/disconnected|reconnecting|offline/i.test(document.body.innerText)",
    )
    .await;
    say(&page, "typed-while-offline").await;
    page.screenshot("offline-typed").await;

    setup.start_again(0).await;
    setup.start_again(1).await;
    let olga = setup.observer(1, "olga").await;
    let seen = olga
        .until("lobby", "showing the message typed offline", |seen| {
            seen.iter().any(|m| m.text == "typed-while-offline")
        })
        .await;
    let copies: Vec<_> = seen
        .iter()
        .filter(|m| m.text == "typed-while-offline")
        .collect();
    assert_eq!(copies.len(), 1, "sent exactly once: {seen:?}");
    assert_eq!(copies[0].from, "alice");
    page.until(
        "showing it once",
        "document.getElementById('log').textContent.split('typed-while-offline').length === 2",
    )
    .await;
    page.screenshot("offline-sent").await;
    page.close().await;
}

/// Bug 3: after a reconnect the page shows no message twice (history is deduplicated by
/// `seq`) and is back in every room it had joined, not only the current one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnect_no_message_is_repeated_and_every_room_is_rejoined() {
    let mut setup = Setup::start("reconnect", Options::default()).await;
    let olga = setup.observer(0, "olga").await;
    let page = setup.browser("alice").await;
    page.goto(&setup.base).await;
    log_in(&page, "alice").await;
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

    // A rolling restart: whichever instance the page is on, it has to reconnect.
    for i in 0..2 {
        setup.stop(i).await;
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
        for i in 0..5 {
            let text = format!("early-{room}-{i}");
            assert_eq!(count(&log, &text), 1, "{text} shown once; log: {log}");
        }
    }
    page.close().await;
}

/* DataBright pages' script (no build step; CSP: script-src 'self', so no inline script).
 *
 * - Wallet discovery: EIP-6963 (eip6963:requestProvider / eip6963:announceProvider), falling
 *   back to window.ethereum (EIP-1193).
 * - #sign-in: eth_requestAccounts -> GET /api/auth/nonce -> the EIP-4361 text, exactly as the
 *   server parses it -> personal_sign -> POST /api/auth/login -> reload.
 * - #sign-out: POST /api/auth/logout (X-CSRF-Token) -> reload.
 * - #local-signin-form (the /signin page): POST /api/auth/local {account, password} -> "/".
 * - #add-chain: wallet_addEthereumChain with rpcUrls [origin + "/rpc"] (embedded chain only).
 * - [data-action] buttons (vote, finalize, withdraw, open-channel): POST /api/tx/<action> with
 *   the data-* values as JSON, have each returned transaction sent (the wallet's
 *   eth_sendTransaction, or POST /api/tx/send for a local session), one after the other, each
 *   mined and indexed (GET /api/tx/status/<hash>) before the next, then reload.
 * - #propose-form[data-dataset]: its file input (a folder via webkitdirectory, or one archive)
 *   as multipart to /api/tx/propose, then the same sending.
 * - form.try-it-form (the model registry's "try it"): see tryIt below.
 * - htmx requests carry X-CSRF-Token; htmx error answers are flashed.
 * - window.DataBright = {signMessage, csrf, sendTransactions, account, flash, provider}.
 * Progress and errors (the server's one-line error.message) are shown in #flash.
 */
(function () {
  "use strict";

  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") || "" : "";
  }

  // htmx would inject an inline <style> for its indicators, which the CSP refuses
  if (window.htmx && window.htmx.config) window.htmx.config.includeIndicatorStyles = false;

  var embedded = meta("databright-embedded") === "true";
  var pageChainId = Number(meta("databright-chain-id")) || null;
  var announced = [];
  var viewerCache = null;

  // -- wallets (EIP-6963, then window.ethereum) -------------------------------------------------
  window.addEventListener("eip6963:announceProvider", function (event) {
    var detail = event.detail;
    if (!detail || !detail.provider || !detail.info) return;
    if (announced.some(function (d) { return d.info.uuid === detail.info.uuid; })) return;
    announced.push(detail);
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));

  function provider() {
    if (announced.length) return announced[0].provider;
    return window.ethereum || null;
  }

  // -- small helpers --------------------------------------------------------------------------
  function csrf() { return meta("csrf-token"); }

  function flash(text, kind) {
    var el = document.getElementById("flash");
    if (!el) return;
    el.textContent = text || "";
    el.className = "flash" + (kind ? " " + kind : "");
  }

  function errorText(err) {
    if (!err) return "something went wrong";
    if (err.code === 4001) return "you rejected the request in your wallet";
    return err.message || String(err);
  }

  async function readJson(response) {
    var body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      var message = body && body.error ? body.error.message : response.status + " " + response.statusText;
      var error = new Error(message);
      error.code = body && body.error ? body.error.code : response.status;
      error.status = response.status;
      throw error;
    }
    return body;
  }

  async function getJson(path) {
    return readJson(await fetch(path, {credentials: "same-origin", headers: {Accept: "application/json"}}));
  }

  async function postJson(path, body) {
    return readJson(await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf()},
      body: JSON.stringify(body || {}),
    }));
  }

  function utf8Hex(text) {
    var bytes = new TextEncoder().encode(text);
    var out = "0x";
    for (var i = 0; i < bytes.length; i++) out += bytes[i].toString(16).padStart(2, "0");
    return out;
  }

  function checksum(address) {
    return window.ethers && window.ethers.getAddress ? window.ethers.getAddress(address) : address;
  }

  function hexWei(value) { return "0x" + BigInt(value || 0).toString(16); }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // -- the signed-in account ------------------------------------------------------------------
  async function account() {
    if (!viewerCache) viewerCache = await getJson("/api/auth/me");
    return viewerCache.signed_in ? viewerCache : null;
  }

  // The EIP-4361 text, line for line as databright.market.siwe.build writes it.
  function siweMessage(f, address) {
    var lines = [f.domain + " wants you to sign in with your Ethereum account:", address, ""];
    if (f.statement) lines.push(f.statement);
    lines.push("");
    lines.push("URI: " + f.uri);
    lines.push("Version: " + f.version);
    lines.push("Chain ID: " + f.chain_id);
    lines.push("Nonce: " + f.nonce);
    lines.push("Issued At: " + f.issued_at);
    if (f.expiration_time) lines.push("Expiration Time: " + f.expiration_time);
    return lines.join("\n");
  }

  async function signIn() {
    var p = provider();
    if (!p) {
      flash(embedded ? "No browser wallet found: install one, or use a local account (Local account)."
                     : "No browser wallet found: install one to sign in.", "error");
      return;
    }
    flash("Asking your wallet for an account…");
    var accounts = await p.request({method: "eth_requestAccounts"});
    if (!accounts || !accounts.length) throw new Error("the wallet gave no account");
    var address = checksum(accounts[0]);
    var fields = await getJson("/api/auth/nonce");
    var message = siweMessage(fields, address);
    flash("Sign the sign-in message in your wallet…");
    var signature = await p.request({method: "personal_sign", params: [utf8Hex(message), address]});
    await postJson("/api/auth/login", {message: message, signature: signature});
    flash("Signed in as " + address);
    location.reload();
  }

  async function signOut() {
    await postJson("/api/auth/logout", {});
    location.reload();
  }

  async function localSignIn(form) {
    var account = form.querySelector('[name="account"]').value;
    var password = form.querySelector('[name="password"]').value;
    flash("Unlocking " + account + "…");
    await postJson("/api/auth/local", {account: account, password: password});
    location.href = "/";
  }

  // -- the chain in the wallet ----------------------------------------------------------------
  function chainParams() {
    return {
      chainId: "0x" + Number(pageChainId).toString(16),
      chainName: "DataBright (embedded, " + location.host + ")",
      nativeCurrency: {name: "Ether", symbol: "ETH", decimals: 18},
      rpcUrls: [location.origin + "/rpc"],
    };
  }

  async function addChain() {
    var p = provider();
    if (!p) throw new Error("no browser wallet found");
    if (!embedded) throw new Error("this server's chain is a real network: pick it in your wallet");
    await p.request({method: "wallet_addEthereumChain", params: [chainParams()]});
    flash("The DataBright chain is in your wallet.");
  }

  async function ensureChain(p, wanted) {
    var current = parseInt(await p.request({method: "eth_chainId"}), 16);
    if (current === Number(wanted)) return;
    var hex = "0x" + Number(wanted).toString(16);
    try {
      await p.request({method: "wallet_switchEthereumChain", params: [{chainId: hex}]});
    } catch (err) {
      if (embedded && (err.code === 4902 || /unrecognized|unknown chain/i.test(err.message || ""))) {
        await p.request({method: "wallet_addEthereumChain", params: [chainParams()]});
      } else {
        throw new Error("switch your wallet to chain " + wanted + " (" + errorText(err) + ")");
      }
    }
  }

  // -- transactions ---------------------------------------------------------------------------
  async function waitIndexed(hash) {
    var deadline = Date.now() + 180000;
    while (Date.now() < deadline) {
      var st = await getJson("/api/tx/status/" + hash);
      if (st.mined && st.status === 0) throw new Error("transaction " + hash + " reverted");
      if (st.mined && st.indexed) return st;
      await sleep(400);
    }
    throw new Error("transaction " + hash + " is not mined yet: reload later");
  }

  // Send [{to, data, value (decimal wei string), description}] in order, each mined and
  // indexed before the next; resolves to their hashes.
  async function sendTransactions(txs, chainId) {
    var viewer = await account();
    if (!viewer) throw new Error("sign in first");
    var hashes = [];
    if (viewer.kind === "local") {
      flash("The server signs " + txs.length + " transaction(s) for " + (viewer.account_name || viewer.address) + "…");
      var sent = await postJson("/api/tx/send", {transactions: txs});
      for (var j = 0; j < sent.hashes.length; j++) {
        await waitIndexed(sent.hashes[j]);
        hashes.push(sent.hashes[j]);
      }
      return hashes;
    }
    var p = provider();
    if (!p) throw new Error("no browser wallet found");
    var accounts = await p.request({method: "eth_requestAccounts"});
    var from = checksum(accounts[0]);
    if (from.toLowerCase() !== viewer.address.toLowerCase()) {
      throw new Error("your wallet's account " + from + " is not the signed-in " + viewer.address);
    }
    await ensureChain(p, chainId || viewer.chain_id || pageChainId);
    for (var i = 0; i < txs.length; i++) {
      var tx = txs[i];
      flash("Confirm in your wallet (" + (i + 1) + "/" + txs.length + "): " + (tx.description || "transaction"));
      var hash = await p.request({method: "eth_sendTransaction", params: [{
        from: from, to: tx.to, data: tx.data, value: hexWei(tx.value),
      }]});
      flash("Waiting for " + (tx.description || hash) + " to be mined…");
      await waitIndexed(hash);
      hashes.push(hash);
    }
    return hashes;
  }

  function snake(name) { return name.replace(/[A-Z]/g, function (c) { return "_" + c.toLowerCase(); }); }

  // data-proposal-id="2" data-support="true" -> {proposal_id: 2, support: true}
  function actionBody(el) {
    var body = {};
    Object.keys(el.dataset).forEach(function (key) {
      if (key === "action") return;
      var name = snake(key);
      var raw = el.dataset[key];
      var value = raw;
      if (raw === "true" || raw === "false") value = raw === "true";
      else if (/_id$/.test(name) && /^[0-9]+$/.test(raw)) value = Number(raw);
      body[name] = value;
    });
    return body;
  }

  var ACTIONS = {vote: 1, finalize: 1, withdraw: 1, "open-channel": 1};

  async function runAction(el) {
    var action = el.dataset.action;
    if (!(await account())) throw new Error("sign in first");
    flash("Preparing " + action + "…");
    var answer = await postJson("/api/tx/" + action, actionBody(el));
    await sendTransactions(answer.transactions, answer.chain_id);
    flash("Done: " + answer.transactions.map(function (t) { return t.description; }).join("; "), "ok");
    location.reload();
  }

  async function propose(form) {
    if (!(await account())) throw new Error("sign in first");
    // every file input of the form: a folder picker and/or an archive picker
    var files = [];
    form.querySelectorAll('input[type="file"]').forEach(function (input) {
      files = files.concat(Array.prototype.slice.call(input.files || []));
    });
    if (!files.length) throw new Error("choose a folder of labelled files, or one archive");
    var data = new FormData();
    data.append("dataset", form.dataset.dataset);
    files.forEach(function (f) { data.append("files", f, f.webkitRelativePath || f.name); });
    flash("Uploading and checking " + files.length + " file(s)…");
    var answer = await readJson(await fetch("/api/tx/propose", {
      method: "POST", credentials: "same-origin", body: data,
      headers: {"X-CSRF-Token": csrf(), "Accept": "application/json"},
    }));
    var p = answer.proposal;
    flash(p.items + " new items (" + p.duplicates + " duplicates, " + p.refused + " refused): sending the proposal…");
    await sendTransactions(answer.transactions, answer.chain_id);
    flash("Proposed " + p.items + " items to " + p.dataset + ".", "ok");
    location.reload();
  }

  // -- "try it": a paid prediction through a channel --------------------------------------------
  // 1. POST /api/models/<id>/try/quote {n} -> {channel_id|null, needed_wei, deposit_wei, voucher}
  //    (voucher: the EIP-712 typed data of the next cumulative voucher, when a channel covers it)
  // 2. no channel: /api/tx/open-channel {model_id, deposit_wei} and send it, then quote again
  // 3. the voucher signed: eth_signTypedData_v4 (wallet) or by the server (local session)
  // 4. POST /api/models/<id>/try multipart {file | rows, channel_id, amount, signature}
  async function tryIt(form) {
    var viewer = await account();
    if (!viewer) throw new Error("sign in first");
    var modelId = Number(form.dataset.modelId);
    var out = form.querySelector(".try-it-result");
    var fileInput = form.querySelector('input[type="file"]');
    var rowsInput = form.querySelector('textarea[name="rows"]');
    var files = fileInput ? Array.prototype.slice.call(fileInput.files || []) : [];
    var rows = rowsInput && rowsInput.value.trim() ? rowsInput.value.trim() : "";
    var n = files.length || (rows ? JSON.parse(rows).length : 0);
    if (!n) throw new Error("choose an image or give rows");
    var quote = await postJson("/api/models/" + modelId + "/try/quote", {n: n});
    if (!quote.voucher) {
      var deposit = form.querySelector('[name="deposit_wei"]');
      var tx = await postJson("/api/tx/open-channel", {model_id: modelId, deposit_wei: deposit ? deposit.value : quote.suggested_deposit_wei});
      await sendTransactions(tx.transactions, tx.chain_id);
      quote = await postJson("/api/models/" + modelId + "/try/quote", {n: n});
      if (!quote.voucher) throw new Error("the channel does not cover this request yet");
    }
    var signature = null;
    if (viewer.kind !== "local") {
      var p = provider();
      flash("Sign the payment voucher (" + quote.voucher.message.amount + " wei in total) in your wallet…");
      signature = await p.request({method: "eth_signTypedData_v4", params: [viewer.address, JSON.stringify(quote.voucher)]});
    }
    var data = new FormData();
    data.append("channel_id", String(quote.channel_id));
    data.append("amount", String(quote.voucher.message.amount));
    if (signature) data.append("signature", signature);
    files.forEach(function (f) { data.append("files", f, f.name); });
    if (!files.length) data.append("rows", rows);
    flash("Predicting…");
    var answer = await readJson(await fetch("/api/models/" + modelId + "/try", {
      method: "POST", credentials: "same-origin", body: data,
      headers: {"X-CSRF-Token": csrf(), "Accept": "application/json"},
    }));
    if (out) out.textContent = answer.predictions.map(function (p) { return p.name + ": " + p.label; }).join("\n");
    flash("Paid " + answer.charged + " wei for " + answer.predictions.length + " prediction(s).", "ok");
    return answer;
  }

  async function signMessage(text) {
    var viewer = await account();
    if (!viewer) throw new Error("sign in first");
    if (viewer.kind === "local") return null;  // the server signs for a local session
    var p = provider();
    if (!p) throw new Error("no browser wallet found");
    return p.request({method: "personal_sign", params: [utf8Hex(text), viewer.address]});
  }

  function guarded(el, fn) {
    return function (event) {
      if (event) event.preventDefault();
      if (el && el.disabled) return;
      if (el) el.disabled = true;
      Promise.resolve().then(fn).catch(function (err) {
        flash(errorText(err), "error");
      }).finally(function () { if (el) el.disabled = false; });
    };
  }

  // -- wiring ---------------------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target : event.target.parentElement;
    if (!target) return;
    var el;
    if ((el = target.closest("#sign-in"))) return guarded(el, signIn)(event);
    if ((el = target.closest("#sign-out"))) return guarded(el, signOut)(event);
    if ((el = target.closest("#add-chain"))) return guarded(el, addChain)(event);
    el = target.closest("[data-action]");
    if (el && ACTIONS[el.dataset.action]) return guarded(el, function () { return runAction(el); })(event);
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = form.querySelector('[type="submit"]');
    if (form.id === "propose-form") return guarded(button, function () { return propose(form); })(event);
    if (form.id === "local-signin-form") return guarded(button, function () { return localSignIn(form); })(event);
    if (form.classList.contains("try-it-form")) return guarded(button, function () { return tryIt(form); })(event);
  });

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrf();
  });
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var message = xhr.status + " " + xhr.statusText;
    try { var body = JSON.parse(xhr.responseText); if (body.error) message = body.error.message; } catch (e) { /* html */ }
    flash(message, "error");
  });

  window.DataBright = {
    signMessage: signMessage,
    csrf: csrf,
    sendTransactions: sendTransactions,
    account: account,
    flash: flash,
    provider: provider,
    siweMessage: siweMessage,
  };
})();

/* Stowage web UI: small, dependency-free enhancements. Every page works as plain HTML forms except the
   add-location wizard, whose steps, inline checks, policies and validation need this script. */
(() => {
  "use strict";

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const csrfToken = () => ($('meta[name="csrf-token"]') || {}).content || "";

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  /* Form fields as a urlencoded body; files are read into text fields by the page itself. */
  function formBody(form, extra = {}) {
    const body = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (typeof value === "string") body.append(name, value);
    }
    for (const [name, value] of Object.entries(extra)) body.set(name, value);
    return body;
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (_) {
      return { message: `Stowage answered unexpectedly (HTTP ${response.status}). Try again in a moment.` };
    }
  }

  async function postForm(url, form, extra = {}) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" },
        body: formBody(form, extra),
      });
    } catch (_) {
      return { status: 0, ok: false, data: { message: "Stowage could not be reached. Check your connection and try again." } };
    }
    if (response.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
    }
    return { status: response.status, ok: response.ok, data: await readJson(response) };
  }

  /* -- copy buttons ------------------------------------------------------------------------------- */
  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      const area = el("textarea", { class: "sr-only", "aria-hidden": "true" });
      area.value = text;
      document.body.append(area);
      area.select();
      let done = false;
      try {
        done = document.execCommand("copy");
      } catch (_) {
        done = false;
      }
      area.remove();
      return done;
    }
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = $(button.dataset.copy);
    if (!source) return;
    const ok = await copyText(source.textContent);
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? "Copied" : "Select and copy";
    button.classList.toggle("copied", ok);
    setTimeout(() => {
      button.textContent = label;
      button.classList.remove("copied");
    }, 1600);
  });

  /* -- long form posts: spinner and elapsed seconds, never a frozen-looking page -------------------- */
  function startTicker(output) {
    const started = Date.now();
    const tick = () => {
      output.textContent = `${Math.floor((Date.now() - started) / 1000)} s`;
    };
    tick();
    const timer = setInterval(tick, 250);
    return () => clearInterval(timer);
  }

  for (const form of $$("form[data-busy]")) {
    form.addEventListener("submit", () => {
      const button = form.querySelector('button[type="submit"]');
      if (!button) return;
      const elapsed = el("span", { class: "elapsed" });
      // Disable after the submission has started, so the button's own value is still sent.
      setTimeout(() => {
        button.disabled = true;
        button.replaceChildren(el("span", { class: "spinner", "aria-hidden": "true" }), ` ${form.dataset.busy} `, elapsed);
        startTicker(elapsed);
      }, 0);
    });
  }

  for (const form of $$("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  /* -- certificate upload: read the PEM file into the text area ------------------------------------ */
  for (const input of $$("input[data-pem-into]")) {
    input.addEventListener("change", async () => {
      const target = $(input.dataset.pemInto);
      const file = input.files && input.files[0];
      if (!target || !file) return;
      if (file.size > 256 * 1024) {
        window.alert("This file is larger than 256 KB: it is not a PEM certificate.");
        input.value = "";
        return;
      }
      target.value = (await file.text()).trim();
      target.dispatchEvent(new Event("input", { bubbles: true }));
    });
  }

  /* -- authentication method panels (wizard and edit page) ----------------------------------------- */
  function syncAuthPanels(root) {
    const chosen = $('input[name="auth"]:checked', root);
    for (const panel of $$("[data-auth-panel]", root)) {
      panel.hidden = !chosen || panel.dataset.authPanel !== chosen.value;
    }
  }
  for (const form of $$("form")) {
    if ($('input[name="auth"]', form)) {
      form.addEventListener("change", (event) => {
        if (event.target.name === "auth") syncAuthPanels(form);
      });
    }
  }

  /* -- live search on the list page ----------------------------------------------------------------- */
  const searchForm = $("form[data-live-search]");
  if (searchForm) {
    const input = $('input[name="search"]', searchForm);
    const results = $(searchForm.dataset.liveSearch);
    let inflight = null;
    const run = async () => {
      const query = input.value.trim();
      const pageUrl = searchForm.action + (query ? `?search=${encodeURIComponent(query)}` : "");
      const fragmentUrl = searchForm.action + `?fragment=1&search=${encodeURIComponent(query)}`;
      if (inflight) inflight.abort();
      inflight = new AbortController();
      results.setAttribute("aria-busy", "true");
      try {
        const response = await fetch(fragmentUrl, { credentials: "same-origin", signal: inflight.signal });
        if (response.ok) {
          results.innerHTML = await response.text(); // server-rendered, escaped fragment of this same page
          window.history.replaceState(null, "", pageUrl);
        }
      } catch (error) {
        if (error.name !== "AbortError") results.setAttribute("data-error", "search failed");
      } finally {
        results.removeAttribute("aria-busy");
      }
    };
    input.addEventListener("input", debounce(run, 250));
    searchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      run();
    });
  }

  /* -- the add-location wizard ---------------------------------------------------------------------- */
  const wizard = $("#wizard");
  if (wizard) initWizard(wizard);

  function initWizard(form) {
    const urls = {
      check: form.dataset.checkUrl,
      policies: form.dataset.policiesUrl,
      validate: form.dataset.validateUrl,
      create: form.dataset.createUrl,
    };
    const steps = $$("[data-step]", form);
    const tabs = $$("[data-step-tab]", form);
    const nextButton = $("[data-next]", form);
    const backButton = $("[data-back]", form);
    const createButton = $("[data-create]", form);
    const createHint = $("[data-create-hint]", form);
    const tokenInput = $('input[name="validation_token"]', form);
    const progress = $("[data-progress]", form);
    const progressText = $("[data-progress-text]", form);
    const elapsedOut = $("[data-elapsed]", form);
    const resultBox = $("[data-result]", form);
    const checksList = $("[data-checks]", form);
    const skipBox = $('input[name="skip_validation"]', form);
    const touched = new Set();
    // Inputs that do not change what validation checks.
    const notValidated = new Set(["csrf_token", "validation_token", "skip_validation", "is_default", "cluster_trust", "cluster_account_id", "cluster_role_arn"]);
    let step = 1;
    let problems = {};
    let validatedSnapshot = null;
    let busy = false;

    const value = (name) => {
      const input = form.elements.namedItem(name);
      if (!input) return "";
      if (input instanceof RadioNodeList) return input.value;
      if (input.type === "checkbox") return input.checked ? "on" : "";
      return input.value;
    };

    const snapshot = () => {
      const pairs = [];
      for (const [name, val] of new FormData(form)) {
        if (typeof val === "string" && !notValidated.has(name)) pairs.push(`${name}=${val}`);
      }
      return pairs.sort().join("\n");
    };

    /* steps */
    function fieldsOf(stepNumber) {
      const stepEl = steps[stepNumber - 1];
      return $$("[data-problem-for]", stepEl)
        .filter((p) => !p.closest(".field").closest("[hidden]"))
        .map((p) => p.dataset.problemFor);
    }

    function show(n) {
      step = n;
      steps.forEach((s, i) => (s.hidden = i !== n - 1));
      tabs.forEach((t, i) => {
        if (i === n - 1) t.setAttribute("aria-current", "step");
        else t.removeAttribute("aria-current");
        t.classList.toggle("done", i < n - 1);
      });
      backButton.hidden = n === 1;
      nextButton.textContent = n === 3 ? "Validate" : "Next";
      createButton.hidden = n !== 3;
      createHint.hidden = n !== 3;
      if (n === 3) fillSummary();
      updateCreate();
      const first = n === 3 ? nextButton : $("input:not([type=hidden]):not([disabled]), select, textarea", steps[n - 1]);
      const focusTarget = n === 2 ? $('input[name="auth"]:checked', form) || first : first;
      if (focusTarget) focusTarget.focus();
    }

    /* inline problems */
    function renderProblems() {
      for (const out of $$("[data-problem-for]", form)) {
        const name = out.dataset.problemFor;
        const problem = problems[name];
        const input = form.elements.namedItem(name);
        if (problem && touched.has(name)) {
          out.textContent = problem.message;
          out.className = `problem problem-${problem.level}`;
          out.hidden = false;
          if (input && input.setAttribute) input.setAttribute("aria-invalid", problem.level === "error" ? "true" : "false");
        } else {
          out.hidden = true;
          out.textContent = "";
          if (input && input.removeAttribute) input.removeAttribute("aria-invalid");
        }
      }
    }

    let checkSeq = 0;
    async function runChecks() {
      const seq = ++checkSeq;
      const result = await postForm(urls.check, form);
      if (seq !== checkSeq) return problems; // a newer check answered already
      if (result.ok) problems = result.data.problems || {};
      renderProblems();
      return problems;
    }
    const checkSoon = debounce(runChecks, 300);

    function firstError(stepNumbers) {
      for (const n of stepNumbers) {
        for (const name of fieldsOf(n)) {
          if (problems[name] && problems[name].level === "error") return { step: n, name };
        }
      }
      return null;
    }

    function focusField(name) {
      const input = form.elements.namedItem(name);
      const target = input instanceof RadioNodeList ? input[0] : input;
      if (!target) return;
      const details = target.closest("details");
      if (details) details.open = true;
      target.focus();
    }

    async function next() {
      if (busy) return;
      if (step < 3) {
        fieldsOf(step).forEach((name) => touched.add(name));
        await runChecks();
        const bad = firstError([step]);
        if (bad) {
          focusField(bad.name);
          return;
        }
        show(step + 1);
        if (step === 2) refreshPolicies();
        return;
      }
      await validate();
    }

    /* policies (STS) */
    const permissionOut = $("#permission-policy", form);
    const trustOut = $("#trust-policy", form);
    function setPolicy(out, text, isError) {
      if (!out) return;
      out.replaceChildren(isError ? el("span", { class: "muted", text }) : document.createTextNode(text));
      const copy = out.parentElement.querySelector(".btn-copy");
      if (copy) copy.disabled = isError;
    }
    let policySeq = 0;
    async function refreshPolicies() {
      if (!permissionOut || !urls.policies) return;
      const bucket = value("bucket").trim();
      if (!bucket) {
        const text = "Enter a bucket name on the first step to see this policy.";
        setPolicy(permissionOut, text, true);
        setPolicy(trustOut, text, true);
        return;
      }
      const params = new URLSearchParams();
      for (const name of ["bucket", "region", "prefix", "kms_key_arn", "agent_access"]) {
        params.set(name, value(name));
      }
      // Account A belongs in the trust policy only when its agents assume the role themselves.
      if (value("agent_access") === "direct") {
        for (const name of ["cluster_trust", "cluster_account_id", "cluster_role_arn"]) params.set(name, value(name));
      }
      params.set("volume_snapshots", value("volume_snapshots") ? "on" : "off");
      const seq = ++policySeq;
      let response;
      let data;
      try {
        response = await fetch(`${urls.policies}?${params}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
        data = await readJson(response);
      } catch (_) {
        response = { ok: false };
        data = { message: "Stowage could not be reached to build the policies." };
      }
      if (seq !== policySeq) return;
      if (response.ok) {
        setPolicy(permissionOut, data.permissionPolicy, false);
        setPolicy(trustOut, data.trustPolicy, false);
      } else if ((data.field || "").startsWith("cluster")) {
        setPolicy(trustOut, data.message, true);
      } else {
        setPolicy(permissionOut, data.message, true);
        setPolicy(trustOut, data.message, true);
      }
    }
    const policiesSoon = debounce(refreshPolicies, 250);
    const policyInputs = new Set(["bucket", "region", "prefix", "kms_key_arn", "volume_snapshots", "agent_access", "cluster_trust", "cluster_account_id", "cluster_role_arn"]);

    function syncClusterFields() {
      const choice = value("cluster_trust");
      const account = $('[data-field="cluster_account_id"]', form);
      const role = $('[data-field="cluster_role_arn"]', form);
      if (account) account.hidden = choice !== "account";
      if (role) role.hidden = choice !== "role";
    }
    syncClusterFields();

    function syncAgentPanels() {
      const mode = value("agent_access") || "brokered";
      for (const panel of $$("[data-agent-panel]", form)) panel.hidden = panel.dataset.agentPanel !== mode;
    }
    syncAgentPanels();

    /* validation and create */
    function updateCreate() {
      const skip = skipBox && skipBox.checked;
      const fresh = validatedSnapshot !== null && validatedSnapshot === snapshot();
      createButton.disabled = busy || !(fresh || skip);
      if (skip) createHint.textContent = "The live checks will be skipped: the location is saved as Unverified.";
      else if (fresh) createHint.textContent = "Validation passed for these exact settings: you can create the location.";
      else if (validatedSnapshot !== null) createHint.textContent = "The settings changed since the last validation: validate again before creating.";
      else createHint.textContent = "Create becomes available after these exact settings pass validation.";
    }

    function fillSummary() {
      const out = $("[data-summary]", form);
      if (!out) return;
      const provider = $('select[name="provider"]', form);
      const rows = [
        ["Location Name", value("name")],
        ["Provider", provider ? provider.options[provider.selectedIndex].text : ""],
        ["S3 Bucket", value("bucket") + (value("prefix") ? ` / ${value("prefix")}` : "")],
        ["Region", value("region")],
        ["S3 URL", value("s3_url") ? `${value("s3_url")}${value("force_path_style") ? " (path style)" : ""}` : "AWS default endpoint"],
        ["Certificate", value("ca_cert").trim() ? "Custom CA certificate" : "Publicly trusted"],
        ["KMS key", value("kms_key_arn") || "None"],
        ["Volume snapshots", value("volume_snapshots") ? "On" : "Off"],
        value("auth") === "sts"
          ? ["Authentication", `STS — ${value("role_arn") || "no role ARN yet"}`]
          : ["Authentication", `Static keys — ${value("access_key_id") || "no access key yet"} (secret hidden)`],
      ];
      if (value("auth") === "sts") {
        rows.push([
          "Agent access",
          value("agent_access") === "direct"
            ? "Direct — agents assume the role themselves with the External ID"
            : "Brokered — agents get short-lived credentials from Stowage",
        ]);
      }
      out.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    }

    let stopTicker = null;
    function setBusy(on, text) {
      busy = on;
      nextButton.disabled = on;
      backButton.disabled = on;
      progress.hidden = !on;
      if (on) {
        progressText.textContent = text;
        stopTicker = startTicker(elapsedOut);
      } else if (stopTicker) {
        stopTicker();
        stopTicker = null;
      }
      updateCreate();
    }

    function showResult(kind, text) {
      resultBox.className = `alert alert-${kind}`;
      resultBox.textContent = text;
      resultBox.hidden = false;
    }

    const MARKS = { passed: "✓", failed: "✕", warning: "!", skipped: "–" };
    function checkItem(check, index) {
      const body = el(
        "div",
        { class: "check-body" },
        el("div", { class: "check-head" }, el("strong", { text: check.id }), " ", el("span", { class: `status-word status-${check.status}`, text: check.status })),
        el("p", { class: "check-message", text: check.message }),
      );
      if (check.remedy) {
        const remedy = el("div", { class: "remedy" });
        if (check.remedyText) remedy.append(el("p", {}, el("strong", { text: "How to fix: " }), check.remedyText));
        if (check.remedyJson) {
          const id = `remedy-json-${index}`;
          remedy.append(
            el("div", { class: "policy-head" }, el("span", { class: "small muted", text: "JSON" }), el("button", { class: "btn btn-small btn-copy", type: "button", "data-copy": `#${id}`, text: "Copy" })),
            el("pre", { class: "json", id, tabindex: "0", text: check.remedyJson }),
          );
        }
        body.append(remedy);
      }
      return el("li", { class: `check check-${check.status}`, "data-check": check.id }, el("span", { class: `mark mark-${check.status}`, "aria-hidden": "true", text: MARKS[check.status] || "?" }), body);
    }

    /* What needs attention first (failed, then warnings); everything else folded underneath. */
    function renderReport(report) {
      const attention = [];
      const rest = [];
      report.checks.forEach((check, index) => {
        (check.status === "failed" || check.status === "warning" ? attention : rest).push(checkItem(check, index));
      });
      const passed = report.checks.filter((c) => c.status === "passed").length;
      const skipped = report.checks.filter((c) => c.status === "skipped").length;
      const items = [...attention];
      if (rest.length) {
        const label = `${passed} check${passed === 1 ? "" : "s"} passed` + (skipped ? `, ${skipped} skipped` : "");
        items.push(
          el(
            "li",
            { class: "checks-more" },
            el("details", {}, el("summary", { text: `Show the ${label}` }), el("ul", { class: "checks" }, ...rest)),
          ),
        );
      }
      checksList.replaceChildren(...items);
    }

    async function validate() {
      [1, 2].forEach((n) => fieldsOf(n).forEach((name) => touched.add(name)));
      await runChecks();
      const bad = firstError([1, 2]);
      if (bad) {
        show(bad.step);
        focusField(bad.name);
        return;
      }
      const validatedInputs = snapshot();
      resultBox.hidden = true;
      checksList.replaceChildren();
      setBusy(true, "Validating: assuming access and probing every permission…");
      const result = await postForm(urls.validate, form);
      setBusy(false);
      if (!result.ok || !result.data.report) {
        showResult("error", result.data.message || "Validation could not run.");
        resultBox.focus();
        return;
      }
      const report = result.data.report;
      renderReport(report);
      if (report.ok && result.data.token) {
        validatedSnapshot = validatedInputs;
        tokenInput.value = result.data.token;
        const warnings = report.checks.filter((c) => c.status === "warning").length;
        showResult("ok", `Validation passed in ${(report.durationMs / 1000).toFixed(1)} s${warnings ? ` with ${warnings} warning(s)` : ""}. You can create the location.`);
      } else {
        validatedSnapshot = null;
        tokenInput.value = "";
        const failed = report.checks.filter((c) => c.status === "failed");
        const names = failed.slice(0, 4).map((c) => c.id).join(", ") + (failed.length > 4 ? ", …" : "");
        showResult("error", `Validation failed: ${failed.length} check${failed.length === 1 ? "" : "s"} failed (${names}). Fix what the remedies say, then validate again.`);
      }
      updateCreate();
      if (!createButton.disabled) createButton.focus();
      else resultBox.focus();
    }

    async function create() {
      if (busy || createButton.disabled) return;
      setBusy(true, "Creating: Stowage checks access once more before saving…");
      const result = await postForm(urls.create, form);
      if (result.status === 201 && result.data.redirect) {
        window.location.assign(result.data.redirect);
        return;
      }
      setBusy(false);
      if (result.data.report) renderReport(result.data.report);
      if (result.status === 409 && result.data.code === "validate_first") {
        validatedSnapshot = null;
        tokenInput.value = "";
        updateCreate();
      }
      showResult("error", result.data.message || "The location could not be created.");
      if (result.data.field && form.elements.namedItem(result.data.field)) {
        const n = steps.findIndex((s) => s.contains(form.elements.namedItem(result.data.field)));
        problems[result.data.field] = { level: "error", message: result.data.message };
        touched.add(result.data.field);
        renderProblems();
        if (n >= 0) show(n + 1);
        focusField(result.data.field);
      } else {
        resultBox.focus();
      }
    }

    /* wiring */
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      next();
    });
    backButton.addEventListener("click", () => {
      if (step > 1) show(step - 1);
    });
    createButton.addEventListener("click", create);
    const onEdit = (event) => {
      const name = event.target.name;
      if (!name) return;
      if (event.type === "change" || event.target.value) touched.add(name);
      if (name === "auth") renderProblems();
      if (name === "cluster_trust") syncClusterFields();
      if (name === "agent_access") {
        syncAgentPanels();
        renderProblems();
      }
      if (policyInputs.has(name)) policiesSoon();
      checkSoon();
      updateCreate();
    };
    form.addEventListener("input", onEdit);
    form.addEventListener("change", onEdit);
    form.addEventListener("focusout", (event) => {
      if (event.target.name && event.target.value) {
        touched.add(event.target.name);
        checkSoon();
      }
    });
    syncAuthPanels(form);
    show(1);
  }
})();

/* Backups: the Create Backup and Schedule Backups dialogs (their links open the same dialogs as pages when
   scripts are off), the expiry and schedule choices, the Backups tab's refresh while backups run, and a
   backup's page: live phase, progress and log tail, and its contents loaded after the page. */
(() => {
  "use strict";

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  /* -- dialogs -------------------------------------------------------------------------------------- */
  function openDialog(dialog) {
    if (dialog.open) dialog.close(); // the server opened it without a backdrop (no-script fallback)
    dialog.showModal();
    const target =
      $('[aria-invalid="true"]', dialog) ||
      $("[autofocus]", dialog) ||
      $('input:not([type="hidden"]), select, textarea', dialog);
    if (target) target.focus();
  }

  for (const link of $$("[data-dialog-open]")) {
    link.addEventListener("click", (event) => {
      const dialog = document.getElementById(link.dataset.dialogOpen);
      if (!dialog || typeof dialog.showModal !== "function") return;
      event.preventDefault();
      openDialog(dialog);
    });
  }
  for (const link of $$("[data-dialog-close]")) {
    link.addEventListener("click", (event) => {
      const dialog = link.closest("dialog");
      if (!dialog || !dialog.open) return;
      event.preventDefault();
      dialog.close();
    });
  }
  for (const dialog of $$("dialog")) {
    // A closed dialog leaves the tab's own address, so a reload neither re-opens it nor re-sends a form.
    dialog.addEventListener("close", () => {
      const back = $("[data-dialog-close]", dialog);
      if (back) window.history.replaceState(null, "", back.getAttribute("href"));
    });
  }
  for (const dialog of $$("dialog[data-autoshow]")) {
    if (typeof dialog.showModal === "function") openDialog(dialog);
  }

  /* -- expiry and schedule choices: show only the fields the choice needs -------------------------- */
  function syncChoices(form) {
    for (const group of $$("[data-expiry]", form)) {
      const chosen = $('input[name="expiry"]:checked', group);
      const custom = $("[data-custom-hours]", group);
      if (custom) custom.hidden = !chosen || chosen.value !== "custom";
    }
    const preset = $('input[name="preset"]:checked', form);
    const cron = $("[data-cron-field]", form);
    const rest = $("[data-schedule-fields]", form);
    if (cron) cron.hidden = !preset || preset.value !== "custom";
    if (rest) rest.hidden = Boolean(preset && preset.value === "never");
  }
  for (const form of $$("dialog form")) {
    form.addEventListener("change", (event) => {
      if (event.target.name !== "expiry" && event.target.name !== "preset") return;
      syncChoices(form);
      if (event.target.value === "custom") {
        const field = $(event.target.name === "expiry" ? 'input[name="custom_hours"]' : 'input[name="cron"]', form);
        if (field) field.focus();
      }
    });
    syncChoices(form);
  }

  /* -- the Backups tab: refresh the table while a backup is new, running or being deleted ------------ */
  const list = $("#backups-list[data-refresh-url]");
  if (list) {
    const refresh = async () => {
      const table = $("[data-backups-table]", list);
      if (!table || !table.hasAttribute("data-active")) return;
      try {
        const response = await fetch(list.dataset.refreshUrl, { credentials: "same-origin" });
        if (response.ok) list.innerHTML = await response.text(); // a server-rendered, escaped fragment
      } catch (_) {
        /* offline for a moment: try again later */
      }
      setTimeout(refresh, 4000);
    };
    setTimeout(refresh, 4000);
  }

  /* -- a backup's contents, read from the bucket after the page is shown ----------------------------- */
  for (const box of $$("[data-load-fragment]")) {
    fetch(box.dataset.loadFragment, { credentials: "same-origin" })
      .then(async (response) => {
        if (!response.ok) throw new Error(String(response.status));
        box.innerHTML = await response.text(); // a server-rendered, escaped fragment
      })
      .catch(() => {
        box.textContent = "The contents could not be loaded. Reload the page to try again.";
      });
  }

  /* -- a notice is said once: a reload (the live page reloads itself) does not repeat it --------------- */
  if ($("[data-backup-live], #backups-list")) {
    const url = new URL(window.location.href);
    if (url.searchParams.has("notice")) {
      url.searchParams.delete("notice");
      window.history.replaceState(null, "", url);
    }
  }

  /* -- a backup's page: phase, progress and new log lines, live while it runs ------------------------- */
  const live = $("[data-backup-live]");
  if (live) initLive(live);

  function initLive(root) {
    const startedFinished = root.hasAttribute("data-finished");
    if (startedFinished && root.hasAttribute("data-logs-finished")) return;
    let after = Number(root.dataset.after || "0");
    const log = $("[data-live-log]", root);
    const empty = $("[data-live-log-empty]", root);
    const items = $("[data-live-items]", root);
    const bar = $("[data-live-bar]", root);
    const progress = $("[data-live-progress]", root);
    const state = $("[data-live-log-state]", root);

    function appendLines(lines) {
      if (!lines.length || !log) return;
      const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      for (const line of lines) {
        const item = document.createElement("li");
        item.className = `log-${line.level}`;
        const time = document.createElement("time");
        time.textContent = line.at;
        const level = document.createElement("span");
        level.className = "lvl";
        level.textContent = line.level;
        const message = document.createElement("span");
        message.className = "msg";
        message.textContent = line.message;
        item.append(time, " ", level, " ", message);
        log.append(item);
      }
      if (empty) empty.hidden = true;
      if (atBottom) log.scrollTop = log.scrollHeight;
    }

    function update(data) {
      appendLines(data.lines);
      after = data.nextAfter;
      if (bar) {
        bar.value = data.percent;
        bar.textContent = `${data.percent}%`;
      }
      if (progress) progress.textContent = `${data.itemsBackedUp} of ${data.totalItems} items (${data.percent}%)`;
      if (items) items.textContent = `${data.itemsBackedUp} of ${data.totalItems} backed up`;
    }

    async function poll() {
      let data;
      try {
        const response = await fetch(`${root.dataset.url}?after=${after}`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (response.status === 404) {
          window.location.assign(root.dataset.goneUrl); // deleted meanwhile
          return;
        }
        if (response.status === 401) {
          window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
          return;
        }
        if (!response.ok) throw new Error(String(response.status));
        data = await response.json();
      } catch (_) {
        setTimeout(poll, 5000);
        return;
      }
      // A new phase (started, ended, being deleted): the whole page again, with its times, reason, size
      // and contents; within a phase only the progress and the log change, and they change in place.
      if (data.phase !== root.dataset.phase) {
        window.location.reload();
        return;
      }
      update(data);
      if (data.finished && data.logsFinished) {
        if (state) state.textContent = "";
        return;
      }
      setTimeout(poll, data.lines.length >= 1000 ? 0 : 1500);
    }
    setTimeout(poll, 1500);
  }
})();

/* Workspaces: a workspace page (or a workspace backup's page) reloads itself while a cluster's part runs, so
   the roll-up and per-cluster states follow the agents; not while a dialog is open (it would lose the input). */
(() => {
  "use strict";
  if (!document.querySelector("[data-reload-while-active]")) return;
  const tick = () => {
    if (document.querySelector("dialog[open]")) {
      setTimeout(tick, 4000);
      return;
    }
    window.location.replace(window.location.pathname); // without ?notice= or ?dialog=: said once, shown once
  };
  setTimeout(tick, 4000);
})();

/* Restores: the Restore form's "Add a mapping" rows, the Restores tab's refresh while a restore runs, and a
   restore's page: live phase, progress and log tail (a new phase reloads the page for its items and summary). */
(() => {
  "use strict";
  const $ = (selector, root = document) => root.querySelector(selector);

  const rows = $("[data-mapping-rows]");
  const add = $("[data-mapping-add]");
  if (rows && add) {
    add.hidden = false;
    add.addEventListener("click", () => {
      const last = rows.lastElementChild;
      if (!last) return;
      const row = last.cloneNode(true);
      const index = rows.children.length + 1;
      for (const input of row.querySelectorAll("input")) {
        input.value = "";
        input.setAttribute("aria-label", input.getAttribute("aria-label").replace(/\(row \d+\)/, `(row ${index})`));
      }
      rows.append(row);
      row.querySelector("input").focus();
    });
  }

  const list = $("#restores-list[data-refresh-url]");
  if (list) {
    const refresh = async () => {
      const table = $("[data-restores-table]", list);
      if (!table || !table.hasAttribute("data-active")) return;
      try {
        const response = await fetch(list.dataset.refreshUrl, { credentials: "same-origin" });
        if (response.ok) list.innerHTML = await response.text(); // a server-rendered, escaped fragment
      } catch (_) {
        /* offline for a moment: try again later */
      }
      setTimeout(refresh, 4000);
    };
    setTimeout(refresh, 4000);
  }

  const root = $("[data-restore-live]");
  if (!root) return;
  const url = new URL(window.location.href);
  if (url.searchParams.has("notice")) {
    url.searchParams.delete("notice"); // said once: the reload on a new phase does not repeat it
    window.history.replaceState(null, "", url);
  }
  if (root.hasAttribute("data-finished") && root.hasAttribute("data-logs-finished")) return;
  let after = Number(root.dataset.after || "0");
  const log = $("[data-live-log]", root);
  const empty = $("[data-live-log-empty]", root);
  const bar = $("[data-live-bar]", root);
  const progress = $("[data-live-progress]", root);
  const state = $("[data-live-log-state]", root);

  function appendLines(lines) {
    if (!lines.length || !log) return;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    for (const line of lines) {
      const item = document.createElement("li");
      item.className = `log-${line.level}`;
      const time = document.createElement("time");
      time.textContent = line.at;
      const level = document.createElement("span");
      level.className = "lvl";
      level.textContent = line.level;
      const message = document.createElement("span");
      message.className = "msg";
      message.textContent = line.message;
      item.append(time, " ", level, " ", message);
      log.append(item);
    }
    if (empty) empty.hidden = true;
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  async function poll() {
    let data;
    try {
      const response = await fetch(`${root.dataset.url}?after=${after}`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.status === 404) {
        window.location.assign(root.dataset.goneUrl);
        return;
      }
      if (response.status === 401) {
        window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      if (!response.ok) throw new Error(String(response.status));
      data = await response.json();
    } catch (_) {
      setTimeout(poll, 5000);
      return;
    }
    // A new phase brings times, the summary, problems and item results: the whole page again (keeping ?action=).
    if (data.phase !== root.dataset.phase) {
      window.location.reload();
      return;
    }
    appendLines(data.lines);
    after = data.nextAfter;
    if (bar) {
      bar.value = data.percent;
      bar.textContent = `${data.percent}%`;
    }
    if (progress) progress.textContent = data.progressText;
    if (data.finished && data.logsFinished) {
      if (state) state.textContent = "";
      return;
    }
    setTimeout(poll, data.lines.length >= 1000 ? 0 : 1500);
  }
  setTimeout(poll, 1500);
})();

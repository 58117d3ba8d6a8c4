/* The simulator's chat page: plays one WeChat user at a time against the bot. No build step. */
"use strict";

(() => {
  // ---------- the page's own words (the bot's words are the bot's business) ----------
  const WORDS = {
    zh: {
      people_title: "选择身份", people_sub: "以谁的身份使用公众号", filter: "搜索姓名、编号、单位",
      new_stranger: "+ 陌生人", strangers: "陌生人", stranger_n: "陌生人 {0}", others: "其他",
      switch_person: "切换身份", scan: "扫一扫", profile: "资料", keyboard: "键盘", menu: "菜单",
      close: "关闭", send: "发送", follow: "关注公众号", unfollow: "不再关注", empty: "选择一个身份开始聊天",
      safe_mode: "安全模式", bind_with: "绑定方式", not_following: "未关注",
      unavailable: "该公众号暂时无法提供服务，请稍后再试", scan_result: "扫描结果：{0}",
      qr_expired: "二维码已过期（{0}）", unsupported_reply: "（暂不支持显示的 {0} 消息）",
      ev_click: "点击菜单「{0}」", ev_view: "打开链接 {0}", ev_subscribe: "你关注了公众号",
      ev_subscribe_qr: "扫码关注了公众号（{0}）", ev_unsubscribe: "你取消了关注", ev_scan: "扫描了二维码 {0}",
      ev_scancode: "扫码：{0}", push: "客服消息", template: "模板消息", details: "详情",
      scan_title: "扫一扫：选择一个二维码", scan_button_title: "{0}：选择要扫描的二维码",
      scan_hint: "模拟把手机摄像头对准一张二维码：图片会被解码，再像微信一样发送。",
      sent_images: "公众号发出的图片", posters: "场所海报", none_yet: "还没有可扫描的二维码",
      to: "发给 {0}", loading: "加载中…", unsupported_button: "模拟器不支持这种菜单按钮：{0}",
      personas_failed: "无法读取人员列表：{0}", name: "姓名", number: "编号", category: "类别",
      roles: "角色", unit: "单位", openid: "OpenID", status: "状态", following: "已关注",
      tags: "标签", error: "出错了：{0}",
      follow_hint: "还没有关注这个公众号。点下方按钮关注，或用右上角的扫一扫扫描场所海报。",
    },
    en: {
      people_title: "Choose a person", people_sub: "Use the account as…", filter: "Search name, number, unit",
      new_stranger: "+ Stranger", strangers: "Strangers", stranger_n: "Stranger {0}", others: "Others",
      switch_person: "Switch person", scan: "Scan", profile: "Profile", keyboard: "Keyboard", menu: "Menu",
      close: "Close", send: "Send", follow: "Follow the account", unfollow: "Unfollow",
      empty: "Choose a person to start chatting", safe_mode: "safe mode", bind_with: "Bind with",
      not_following: "not following", unavailable: "This account is temporarily unavailable",
      scan_result: "Scanned: {0}", qr_expired: "This QR code has expired ({0})",
      unsupported_reply: "(a {0} message the simulator cannot show)", ev_click: "Tapped menu “{0}”",
      ev_view: "Opened {0}", ev_subscribe: "You followed the account",
      ev_subscribe_qr: "Followed by scanning a QR code ({0})", ev_unsubscribe: "You unfollowed the account",
      ev_scan: "Scanned QR code {0}", ev_scancode: "Scanned: {0}", push: "Customer-service message",
      template: "Template message", details: "Details", scan_title: "Scan: pick a QR code",
      scan_button_title: "{0}: pick the code to scan",
      scan_hint: "Points the phone's camera at a code: the image is decoded and sent as WeChat would.",
      sent_images: "Images the account sent", posters: "Place posters", none_yet: "Nothing to scan yet",
      to: "to {0}", loading: "Loading…", unsupported_button: "The simulator does not support {0} buttons",
      personas_failed: "Could not load the people: {0}", name: "Name", number: "Number",
      category: "Category", roles: "Roles", unit: "Unit", openid: "OpenID", status: "Status",
      following: "following", tags: "Tags",
      error: "Error: {0}",
      follow_hint: "Not following this account yet. Follow below, or scan a place poster with the scan button at the top.",
    },
  };
  const CATEGORIES = {
    zh: { student: "学生", faculty: "教师", staff: "职工", family: "家属", contractor: "施工人员",
          vendor: "商户", partner: "合作单位", resident: "社区居民", temporary: "临时人员" },
    en: { student: "Students", faculty: "Faculty", staff: "Staff", family: "Family",
          contractor: "Contractors", vendor: "Vendors", partner: "Partners", resident: "Residents",
          temporary: "Temporary" },
  };
  // One person's category; CATEGORIES above name the groups in the list.
  const CATEGORY_ONE = {
    zh: CATEGORIES.zh,
    en: { student: "Student", faculty: "Faculty", staff: "Staff", family: "Family member",
          contractor: "Contractor", vendor: "Vendor", partner: "Partner", resident: "Resident",
          temporary: "Temporary" },
  };
  const ROLES = {
    zh: { guard: "门岗", responsible: "负责人", health_officer: "防疫专员", canteen: "食堂", admin: "管理员" },
    en: { guard: "guard", responsible: "responsible", health_officer: "health officer",
          canteen: "canteen", admin: "admin" },
  };
  const CATEGORY_ORDER = Object.keys(CATEGORIES.en);
  const COLORS = ["#5b8def", "#e8833a", "#9b6fd6", "#d45d79", "#2fa37c", "#c7a131", "#4aa3c1"];

  const $ = (id) => document.getElementById(id);
  const ui = {
    lang: localStorage.getItem("sim.lang") === "en" ? "en" : "zh",
    config: null,
    personas: [],
    strangers: JSON.parse(localStorage.getItem("sim.strangers") || "[]"),
    openid: null,
    user: null,
    mode: "menu",
    seen: new Set(),
    lastShownAt: 0,
    pending: 0,
    source: null,
  };

  function t(key, ...args) {
    const text = (WORDS[ui.lang][key] ?? WORDS.zh[key] ?? key);
    return text.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ""));
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  async function call(path, body) {
    const options = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const response = await fetch(path, options);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.error || `HTTP ${response.status}`);
      error.data = data;
      throw error;
    }
    return data;
  }

  let toastTimer = 0;
  function toast(text) {
    const box = $("toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 2600);
  }

  // ---------- language ----------
  function applyLanguage() {
    document.documentElement.lang = ui.lang === "zh" ? "zh-CN" : "en";
    $("lang").textContent = ui.lang === "zh" ? "EN" : "中文";
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    }
    for (const node of document.querySelectorAll("[data-i18n-title]")) {
      node.title = t(node.dataset.i18nTitle);
      node.setAttribute("aria-label", node.title);
    }
    renderPeople();
    if (ui.openid) {
      renderWhoami();
      redrawMessages();
    }
  }

  // ---------- people ----------
  function avatarFor(name, seed) {
    let hash = 0;
    for (const ch of seed) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return el("span", { class: "avatar", style: `background:${COLORS[hash % COLORS.length]}` },
      Array.from(name)[0] || "?");
  }

  function describe(persona) {
    const category = CATEGORY_ONE[ui.lang][persona.category] || persona.category || "";
    return [category, persona.unit].filter(Boolean).join(" · ");
  }

  function bindText(persona) {
    return persona.bind_hint ? `绑定 ${persona.person_no} ${persona.bind_hint}` : "";
  }

  function renderPeople() {
    const list = $("people-list");
    const query = $("filter").value.trim().toLowerCase();
    const groups = new Map();
    for (const persona of ui.personas) {
      const haystack = [persona.name, persona.person_no, persona.unit, persona.category,
        ...persona.roles].join(" ").toLowerCase();
      if (query && !haystack.includes(query)) continue;
      const key = CATEGORY_ORDER.includes(persona.category) ? persona.category : "";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(persona);
    }
    const order = [...CATEGORY_ORDER, ""];
    const sections = [];
    for (const key of order) {
      const members = groups.get(key);
      if (!members) continue;
      sections.push(el("div", { class: "group-title" },
        key ? CATEGORIES[ui.lang][key] : t("others"), ` (${members.length})`));
      for (const persona of members) sections.push(personRow(persona));
    }
    if (ui.strangers.length && !query) {
      sections.push(el("div", { class: "group-title" }, t("strangers")));
      ui.strangers.forEach((openid, index) => {
        const name = t("stranger_n", index + 1);
        sections.push(el("button", {
          class: "person" + (openid === ui.openid ? " active" : ""), type: "button",
          onclick: () => select(openid),
        }, avatarFor("?", openid), el("span", { class: "person-main" },
          el("div", { class: "person-name" }, name),
          el("div", { class: "person-meta" }, openid))));
      });
    }
    list.replaceChildren(...sections);
  }

  function personRow(persona) {
    const roles = persona.roles.map((role) => el("span", { class: "chip" }, ROLES[ui.lang][role] || role));
    const hint = bindText(persona);
    return el("button", {
      class: "person" + (persona.openid === ui.openid ? " active" : ""), type: "button",
      onclick: () => select(persona.openid),
    }, avatarFor(persona.name, persona.openid), el("span", { class: "person-main" },
      el("div", { class: "person-name" }, persona.name,
        el("span", { class: "caption" }, `  ${persona.person_no}`)),
      el("div", { class: "person-meta" }, describe(persona)),
      el("div", { class: "chips" }, roles, hint ? el("span", { class: "chip hint" }, hint) : null)));
  }

  async function loadPeople() {
    try {
      const data = await call("chat/personas");
      ui.personas = data.personas || [];
      $("people-error").hidden = true;
    } catch (error) {
      ui.personas = (error.data && error.data.personas) || [];
      $("people-error").textContent = t("personas_failed", error.message);
      $("people-error").hidden = false;
    }
    renderPeople();
  }

  async function newStranger() {
    const data = await call("chat/stranger", {});
    ui.strangers.push(data.openid);
    localStorage.setItem("sim.strangers", JSON.stringify(ui.strangers));
    await select(data.openid);
  }

  function personaOf(openid) {
    return ui.personas.find((p) => p.openid === openid) || null;
  }

  function nameOf(openid) {
    const persona = personaOf(openid);
    if (persona) return persona.name;
    const index = ui.strangers.indexOf(openid);
    return index >= 0 ? t("stranger_n", index + 1) : openid.slice(0, 8) + "…";
  }

  // ---------- choosing who we are ----------
  async function select(openid) {
    if (ui.source) ui.source.close();
    ui.openid = openid;
    ui.seen = new Set();
    ui.entries = [];
    ui.lastShownAt = 0;
    ui.mode = "menu";
    localStorage.setItem("sim.openid", openid);
    document.body.classList.remove("picking");
    $("messages").replaceChildren();
    renderPeople();
    try {
      await loadUser();
    } catch (error) {
      toast(t("error", error.message));
      document.body.classList.add("picking");
      return;
    }
    const source = new EventSource("chat/events?openid=" + encodeURIComponent(openid));
    source.addEventListener("message", (event) => addEntry(JSON.parse(event.data)));
    source.addEventListener("menu", () => loadUser().catch(() => {}));
    ui.source = source;
  }

  async function loadUser() {
    ui.user = await call("chat/user?openid=" + encodeURIComponent(ui.openid));
    renderWhoami();
    renderBar();
  }

  function renderWhoami() {
    const box = $("whoami");
    const user = ui.user;
    if (!user) { box.hidden = true; return; }
    const persona = user.persona;
    const parts = [el("strong", {}, nameOf(user.openid))];
    if (persona) parts.push(el("span", {}, describe(persona)));
    for (const role of persona ? persona.roles : []) {
      parts.push(el("span", { class: "chip" }, ROLES[ui.lang][role] || role));
    }
    if (!user.following) parts.push(el("span", { class: "chip" }, t("not_following")));
    const hint = persona ? bindText(persona) : "";
    if (hint) {
      parts.push(el("span", { class: "chip hint", title: t("bind_with"), onclick: () => prefill(hint) },
        hint));
    }
    box.replaceChildren(...parts);
    box.hidden = false;
  }

  function prefill(text) {
    ui.mode = "keyboard";
    renderBar();
    $("text").value = text;
    $("text").focus();
  }

  // ---------- the bottom bar ----------
  function renderHint() {
    const box = $("messages");
    const existing = box.querySelector(".empty");
    const wanted = ui.user && !ui.user.following && !(ui.entries || []).length;
    if (wanted && !existing) box.prepend(el("div", { class: "empty" }, t("follow_hint")));
    else if (!wanted && existing) existing.remove();
  }

  function renderBar() {
    renderHint();
    const user = ui.user;
    const menu = user && user.menu;
    closeSubmenu();
    $("follow-bar").hidden = !user || user.following;
    const showMenu = Boolean(user && user.following && menu && ui.mode === "menu");
    $("menu-bar").hidden = !showMenu;
    $("input-bar").hidden = !user || !user.following || showMenu;
    $("to-menu").hidden = !menu;
    if (!menu) return;
    $("menu-buttons").replaceChildren(...menu.button.map((button) => {
      const hasSubs = button.sub_button && button.sub_button.length;
      const node = el("button", { type: "button" }, hasSubs ? el("i", { class: "lines" }) : null,
        button.name);
      node.addEventListener("click", (event) => {
        event.stopPropagation();
        if (hasSubs) toggleSubmenu(node, button.sub_button);
        else press(button);
      });
      return node;
    }));
  }

  function toggleSubmenu(anchor, buttons) {
    const box = $("submenu");
    const wasOpen = anchor.classList.contains("open");
    closeSubmenu();
    if (wasOpen) return;
    anchor.classList.add("open");
    box.replaceChildren(...buttons.map((button) => el("button", {
      type: "button", onclick: (event) => { event.stopPropagation(); closeSubmenu(); press(button); },
    }, button.name)));
    const bar = anchor.closest(".bar").getBoundingClientRect();
    const rect = anchor.getBoundingClientRect();
    box.hidden = false;
    const half = box.offsetWidth / 2;
    const centre = rect.left + rect.width / 2 - bar.left;
    const left = Math.min(Math.max(centre, half + 6), bar.width - half - 6);
    box.style.left = left + "px";
    // Point the caret at the button even when the popup is pushed in from the edge.
    box.style.setProperty("--caret", centre - left + half + "px");
  }

  function closeSubmenu() {
    $("submenu").hidden = true;
    for (const node of document.querySelectorAll(".menu-buttons .open")) node.classList.remove("open");
  }

  function press(button) {
    switch (button.type) {
      case "click":
        return send({ type: "click", key: button.key });
      case "view":
        window.open(button.url, "_blank", "noopener");
        return send({ type: "view", url: button.url });
      case "scancode_waitmsg":
      case "scancode_push":
        return openScanner({ via: "button", key: button.key, label: button.name });
      default:
        return toast(t("unsupported_button", button.type));
    }
  }

  // ---------- talking to the bot ----------
  async function send(payload) {
    if (!ui.openid) return;
    const openid = ui.openid;
    ui.pending += 1;
    renderTyping();
    try {
      const data = await call("chat/send", { openid, ...payload });
      if (openid === ui.openid) for (const entry of data.entries) addEntry(entry);
      if (payload.type === "subscribe" || payload.type === "unsubscribe" || payload.type === "scan") {
        await loadUser();
      }
    } catch (error) {
      toast(t("error", error.message));
    } finally {
      ui.pending -= 1;
      renderTyping();
    }
  }

  function renderTyping() {
    const existing = document.querySelector(".typing");
    if (ui.pending > 0 && !existing) {
      $("messages").append(el("div", { class: "row typing" }, botAvatar(),
        el("div", { class: "bubble" }, el("span", { class: "dot" }, "•"),
          el("span", { class: "dot" }, "•"), el("span", { class: "dot" }, "•"))));
      scrollDown();
    } else if (ui.pending === 0 && existing) {
      existing.remove();
    }
  }

  // ---------- the conversation ----------
  function addEntry(entry) {
    if (entry.openid !== ui.openid || ui.seen.has(entry.id)) return;
    ui.seen.add(entry.id);
    ui.entries.push(entry);
    ui.entries.sort((a, b) => a.id - b.id);
    const last = ui.entries[ui.entries.length - 1] === entry;
    if (!last) return redrawMessages();
    renderHint();
    appendEntry(entry);
    const typing = document.querySelector(".typing");
    if (typing) $("messages").append(typing);
    scrollDown();
  }

  function redrawMessages() {
    ui.lastShownAt = 0;
    $("messages").replaceChildren();
    for (const entry of ui.entries || []) appendEntry(entry);
    renderHint();
    renderTyping();
    scrollDown();
  }

  function appendEntry(entry) {
    const box = $("messages");
    if (entry.at - ui.lastShownAt > 300) {
      box.append(el("div", { class: "time" }, formatTime(entry.at)));
    }
    ui.lastShownAt = entry.at;
    box.append(renderEntry(entry));
  }

  function formatTime(seconds) {
    const date = new Date(seconds * 1000);
    const sameDay = date.toDateString() === new Date().toDateString();
    const time = date.toLocaleTimeString(ui.lang === "zh" ? "zh-CN" : "en-GB",
      { hour: "2-digit", minute: "2-digit" });
    return sameDay ? time : date.toLocaleDateString(ui.lang === "zh" ? "zh-CN" : "en-GB") + " " + time;
  }

  function scrollDown() {
    const box = $("messages");
    requestAnimationFrame(() => { box.scrollTop = box.scrollHeight; });
  }

  function botAvatar() {
    const name = (ui.config && ui.config.account_name) || "W";
    return el("span", { class: "avatar bot" }, Array.from(name)[0]);
  }

  function renderEntry(entry) {
    if (entry.dir === "system") {
      const known = ["unavailable", "scan_result", "qr_expired", "unsupported_reply"];
      const text = known.includes(entry.code) ? t(entry.code, entry.text) : entry.text;
      return el("div", { class: "note" + (entry.code === "unavailable" ? " warn" : "") }, text);
    }
    if (entry.kind === "event") return el("div", { class: "note" }, eventText(entry));
    const mine = entry.dir === "in";
    let body;
    if (entry.kind === "text") body = el("div", { class: "bubble" }, mine ? entry.text : richText(entry.text));
    else if (entry.kind === "image") body = picture("media/" + encodeURIComponent(entry.media_id));
    else if (entry.kind === "news") body = newsCard(entry.articles || []);
    else if (entry.kind === "template") body = templateCard(entry);
    else body = el("div", { class: "bubble" }, entry.text || entry.kind);
    const caption = entry.via === "custom" ? el("span", { class: "caption" }, t("push")) : null;
    const avatar = mine ? avatarFor(nameOf(entry.openid), entry.openid) : botAvatar();
    return el("div", { class: "row" + (mine ? " mine" : "") }, avatar,
      el("div", { class: "stack" }, body, caption));
  }

  function eventText(entry) {
    switch (entry.event) {
      case "CLICK": return t("ev_click", entry.text || entry.key);
      case "VIEW": return t("ev_view", entry.key);
      case "subscribe":
        return entry.key ? t("ev_subscribe_qr", entry.key.replace(/^qrscene_/, "")) : t("ev_subscribe");
      case "unsubscribe": return t("ev_unsubscribe");
      case "SCAN": return t("ev_scan", entry.key);
      default: return t("ev_scancode", entry.text || entry.key);
    }
  }

  function decodeEntities(text) {
    const area = document.createElement("textarea");
    area.innerHTML = text;
    return area.value;
  }

  function menuParams(href) {
    // weixin://bizmsgmenu?msgmenucontent=…&msgmenuid=…; content may be raw or percent-encoded.
    const params = {};
    for (const pair of href.slice(href.indexOf("?") + 1).split("&")) {
      const at = pair.indexOf("=");
      if (at < 0) continue;
      const raw = pair.slice(at + 1);
      try { params[pair.slice(0, at)] = decodeURIComponent(raw); } catch { params[pair.slice(0, at)] = raw; }
    }
    return params;
  }

  function richText(text) {
    // Only <a href> is markup in WeChat text; everything else is shown as typed.
    const parts = [];
    const pattern = /<a\s+[^>]*?href\s*=\s*(["'])(.*?)\1[^>]*>([\s\S]*?)<\/a>/gi;
    let last = 0;
    for (let match; (match = pattern.exec(text));) {
      parts.push(text.slice(last, match.index));
      last = pattern.lastIndex;
      const href = decodeEntities(match[2]);
      const label = decodeEntities(match[3].replace(/<[^>]*>/g, ""));
      if (href.startsWith("weixin://bizmsgmenu")) {
        const params = menuParams(href);
        const content = params.msgmenucontent || label;
        parts.push(el("button", {
          class: "option", type: "button",
          onclick: () => send({ type: "text", content, menu_id: params.msgmenuid }),
        }, label));
      } else if (/^https?:\/\//i.test(href)) {
        parts.push(el("a", { href, target: "_blank", rel: "noopener" }, label));
      } else {
        parts.push(label);
      }
    }
    parts.push(text.slice(last));
    return parts;
  }

  function picture(src) {
    const image = el("img", { class: "picture", src, alt: "", loading: "lazy" });
    image.addEventListener("click", () => {
      $("lightbox-img").src = src;
      $("lightbox").hidden = false;
    });
    image.addEventListener("load", scrollDown, { once: true });
    return image;
  }

  function newsCard(articles) {
    const article = articles[0] || {};
    const safeUrl = /^https?:\/\//i.test(article.url || "") ? article.url : null;
    const safePic = /^https?:\/\//i.test(article.picurl || "") ? article.picurl : null;
    return el("a", { class: "card", href: safeUrl, target: "_blank", rel: "noopener",
      style: "text-decoration:none;color:inherit" },
      el("div", { class: "card-head" }, article.title || ""),
      safePic ? el("img", { src: safePic, alt: "" }) : null,
      article.description ? el("div", { class: "desc" }, article.description) : null);
  }

  function templateCard(entry) {
    const fields = entry.fields || [];
    const first = fields.find((f) => f.name === "first");
    const remark = fields.find((f) => f.name === "remark");
    const rows = fields.filter((f) => f !== first && f !== remark).map((f) =>
      el("div", { class: "card-field" }, el("span", { class: "k" }, f.name), el("span", { class: "v" }, f.value)));
    const safeUrl = /^https?:\/\//i.test(entry.url || "") ? entry.url : null;
    return el("div", { class: "card" },
      el("div", { class: "card-head" }, first ? first.value : t("template")),
      el("div", { class: "card-body" }, rows, remark ? el("div", { class: "caption" }, remark.value) : null),
      el("div", { class: "card-foot" }, el("span", {}, t("template") + " · " + (entry.key || "")),
        safeUrl ? el("a", { href: safeUrl, target: "_blank", rel: "noopener" }, t("details") + " ›") : null));
  }

  // ---------- sheets: the scanner and the profile ----------
  function openSheet(title, ...content) {
    $("sheet-title").textContent = title;
    $("sheet-body").replaceChildren(...content);
    $("sheet").hidden = false;
  }

  function closeSheet() {
    $("sheet").hidden = true;
  }

  async function openScanner({ via, key, label }) {
    if (!ui.openid) return;
    const title = via === "button" ? t("scan_button_title", label || key) : t("scan_title");
    openSheet(title, el("p", { class: "hint-text" }, t("loading")));
    let data;
    try {
      data = await call("chat/scannables");
    } catch (error) {
      closeSheet();
      return toast(t("error", error.message));
    }
    const shoot = (source) => { closeSheet(); send({ type: "scan", via, key, ...source }); };
    const sections = [el("p", { class: "hint-text" }, t("scan_hint"))];
    if (data.images.length) {
      sections.push(el("h3", {}, t("sent_images")), el("div", { class: "codes" }, data.images.map((image) =>
        el("button", { class: "code", type: "button", onclick: () => shoot({ media_id: image.media_id }) },
          el("img", { src: image.src, alt: "", loading: "lazy" }),
          el("span", {}, t("to", nameOf(image.openid) || image.name))))));
    }
    if (data.posters.length) {
      sections.push(el("h3", {}, t("posters")), el("div", { class: "codes" }, data.posters.map((poster) =>
        el("button", { class: "code", type: "button", onclick: () => shoot({ ticket: poster.ticket }) },
          el("img", { src: poster.src, alt: "", loading: "lazy" }), el("span", {}, poster.scene)))));
    }
    if (!data.images.length && !data.posters.length) sections.push(el("p", {}, t("none_yet")));
    if (!$("sheet").hidden) $("sheet-body").replaceChildren(...sections);
  }

  function openProfile() {
    const user = ui.user;
    if (!user) return;
    const persona = user.persona;
    const rows = [];
    const add = (label, value, mono) => {
      if (value) rows.push(el("dt", {}, label), el("dd", { class: mono ? "mono" : "" }, value));
    };
    add(t("name"), nameOf(user.openid));
    if (persona) {
      add(t("number"), persona.person_no);
      add(t("category"), CATEGORY_ONE[ui.lang][persona.category] || persona.category);
      add(t("roles"), persona.roles.map((r) => ROLES[ui.lang][r] || r).join(", "));
      add(t("unit"), persona.unit);
      add(t("bind_with"), bindText(persona), true);
    }
    add(t("openid"), user.openid, true);
    add(t("status"), user.following ? t("following") : t("not_following"));
    add(t("tags"), user.tags.join(", "));
    const toggle = user.following
      ? el("button", { class: "ghost danger", type: "button",
        onclick: () => { closeSheet(); send({ type: "unsubscribe" }); } }, t("unfollow"))
      : el("button", { class: "primary", type: "button",
        onclick: () => { closeSheet(); send({ type: "subscribe" }); } }, t("follow"));
    const language = el("button", { class: "ghost", type: "button",
      onclick: () => { switchLanguage(); openProfile(); } }, ui.lang === "zh" ? "English" : "中文");
    openSheet(t("profile"), el("div", { class: "profile" }, el("dl", {}, rows),
      el("div", { class: "actions" }, toggle, language)));
  }

  function switchLanguage() {
    ui.lang = ui.lang === "zh" ? "en" : "zh";
    localStorage.setItem("sim.lang", ui.lang);
    applyLanguage();
  }

  // ---------- wiring ----------
  function wire() {
    $("lang").addEventListener("click", switchLanguage);
    $("filter").addEventListener("input", renderPeople);
    $("stranger").addEventListener("click", () => newStranger().catch((e) => toast(t("error", e.message))));
    $("back").addEventListener("click", () => { document.body.classList.add("picking"); loadPeople(); });
    $("scan").addEventListener("click", () => openScanner({ via: "camera" }));
    $("more").addEventListener("click", openProfile);
    $("follow").addEventListener("click", () => send({ type: "subscribe" }));
    $("to-keyboard").addEventListener("click", () => { ui.mode = "keyboard"; renderBar(); $("text").focus(); });
    $("to-menu").addEventListener("click", () => { ui.mode = "menu"; renderBar(); });
    $("input-bar").addEventListener("submit", (event) => {
      event.preventDefault();
      const content = $("text").value.trim();
      if (!content) return;
      $("text").value = "";
      send({ type: "text", content });
    });
    $("sheet").addEventListener("click", (event) => { if (event.target === $("sheet")) closeSheet(); });
    $("sheet-close").addEventListener("click", closeSheet);
    $("lightbox").addEventListener("click", () => { $("lightbox").hidden = true; });
    document.addEventListener("click", closeSubmenu);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { closeSheet(); closeSubmenu(); $("lightbox").hidden = true; }
    });
  }

  async function start() {
    wire();
    applyLanguage();
    try {
      ui.config = await call("chat/config");
      $("account").textContent = ui.config.account_name;
      document.title = ui.config.account_name + " · WeChat simulator";
      $("safe-mode").hidden = !ui.config.safe_mode;
    } catch (error) {
      toast(t("error", error.message));
    }
    await loadPeople();
    const params = new URLSearchParams(location.search);
    const wanted = params.get("openid") || localStorage.getItem("sim.openid");
    const known = wanted && (personaOf(wanted) || ui.strangers.includes(wanted));
    if (known) await select(wanted);
  }

  start();
})();

// The page's language, told to the server: copy <html lang> into a cookie that every request
// carries (again whenever this tab is focused or clicked, so two tabs in two languages each send
// their own), and on a switch press the hidden button that re-renders what the server wrote.
// The page is built in one language (builtLang); a reader in another sees its views only once the server has
// sent them in theirs: until every part named in `pending` has called window.PLAYGROUND.translated(part), <html>
// carries the class `pg-translating` (style.css hides the views), for `revealAfterMs` at most.
// Reads window.PLAYGROUND.langCookie, relocalizeId, builtLang, pending, revealAfterMs (set by playground/ui/lang.py).
(() => {
  const {langCookie, relocalizeId, builtLang, pending, revealAfterMs} = window.PLAYGROUND;
  const waiting = new Set(pending);
  const root = document.documentElement;
  const reveal = () => root.classList.remove("pg-translating");
  const family = (lang) => (lang || "").toLowerCase().startsWith("zh") ? "zh" : "en";
  window.PLAYGROUND.translated = (part) => {
    waiting.delete(part);
    if (!waiting.size) reveal();
  };
  let last = null;
  const sync = () => {
    const lang = document.documentElement.lang;
    if (!lang) return;
    if (last === null && family(lang) !== family(builtLang) && waiting.size) {
      root.classList.add("pg-translating");
      setTimeout(reveal, revealAfterMs);
    }
    // a Space runs in a cross-site iframe: there only a partitioned, secure cookie is kept
    const scope = location.protocol === "https:" ? "; SameSite=None; Secure; Partitioned" : "; SameSite=Lax";
    document.cookie = langCookie + "=" + encodeURIComponent(lang) + "; path=/" + scope;
    if (last !== null && lang !== last) document.getElementById(relocalizeId)?.click();
    last = lang;
  };
  new MutationObserver(sync).observe(document.documentElement, {attributes: true, attributeFilter: ["lang"]});
  window.addEventListener("focus", sync);
  document.addEventListener("pointerdown", sync, true);
  sync();
})();

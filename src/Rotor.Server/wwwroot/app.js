// Rotor's page: streams chat answers from /v1/chat/completions (server-sent events), lists the sources of grounded
// answers and /v1/search results, and shows a passage when a citation or a source is clicked. No build step.
'use strict';
const $ = id => document.getElementById(id);
let models = { chat: null, grounded: null };
let sources = [];
let controller = null;

$('key').value = localStorage.getItem('rotor-key') || '';
$('key').addEventListener('change', () => { localStorage.setItem('rotor-key', $('key').value); loadModels(); });

function headers() {
  const h = { 'Content-Type': 'application/json' };
  if ($('key').value) h.Authorization = 'Bearer ' + $('key').value;
  return h;
}

async function loadModels() {
  try {
    const r = await fetch('v1/models', { headers: headers() });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
    const ids = j.data.map(m => m.id);
    models.chat = ids[0];
    models.grounded = ids.find(id => id === models.chat + '-rag') || null;
    $('model').textContent = models.chat + (models.grounded ? ' (with sources)' : '');
    $('grounded').checked = !!models.grounded;
    $('grounded').disabled = !models.grounded;
  } catch (e) { $('model').textContent = 'models: ' + e.message; }
}

function addMessage(cls, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + cls;
  div.textContent = text;
  $('log').appendChild(div);
  $('log').scrollTop = $('log').scrollHeight;
  return div;
}

// The answer's text with [n] turned into clickable citations of source n.
function renderAnswer(div, text) {
  div.textContent = '';
  let last = 0;
  for (const m of text.matchAll(/\[(\d+)\]/g)) {
    div.appendChild(document.createTextNode(text.slice(last, m.index)));
    const n = Number(m[1]);
    const span = document.createElement('span');
    span.textContent = m[0];
    if (sources.some(s => s.number === n)) { span.className = 'cite'; span.dataset.n = n; span.onclick = () => showSource(n); }
    div.appendChild(span);
    last = m.index + m[0].length;
  }
  div.appendChild(document.createTextNode(text.slice(last)));
}

function setSources(list) {
  sources = list || [];
  const ol = $('sources');
  ol.textContent = '';
  for (const s of sources) {
    const li = document.createElement('li');
    li.value = s.number;
    li.dataset.n = s.number;
    li.innerHTML = '';
    li.appendChild(document.createTextNode(s.title + (s.section ? ' — ' + s.section : '') + ' '));
    const sc = document.createElement('span');
    sc.className = 'score';
    sc.textContent = s.score.toFixed(3);
    li.appendChild(sc);
    li.onclick = () => showSource(s.number);
    ol.appendChild(li);
  }
  $('passage').hidden = true;
}

function showSource(n) {
  const s = sources.find(x => x.number === n);
  if (!s) return;
  for (const li of $('sources').children) li.classList.toggle('active', Number(li.dataset.n) === n);
  $('passage-title').textContent = '[' + n + '] ' + s.title + (s.section ? ' — ' + s.section : '') + ' (' + s.id + ')';
  $('passage-text').textContent = s.text;
  $('passage').hidden = false;
}

async function ask(question) {
  addMessage('user', question);
  const answer = addMessage('assistant', '');
  const grounded = $('grounded').checked && models.grounded;
  const body = { model: grounded ? models.grounded : models.chat, stream: true, messages: [{ role: 'user', content: question }] };
  controller = new AbortController();
  $('send').disabled = true; $('stop').disabled = false;
  let text = '', deltas = 0;
  try {
    const r = await fetch('v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!r.ok) { const j = await r.json(); throw new Error(j.error ? j.error.message : r.statusText); }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, i); buf = buf.slice(i + 2);
        if (!event.startsWith('data: ')) continue;
        const data = event.slice(6);
        if (data === '[DONE]') continue;
        const j = JSON.parse(data);
        if (j.error) throw new Error(j.error.message);
        if (j.sources) setSources(j.sources);
        for (const c of j.choices || []) if (c.delta && c.delta.content) { text += c.delta.content; deltas++; }
        renderAnswer(answer, text);
        answer.dataset.deltas = deltas;
      }
    }
    answer.dataset.done = 'true';
  } catch (e) {
    if (e.name !== 'AbortError') addMessage('error', e.message);
    answer.dataset.done = 'true';
  } finally {
    controller = null;
    $('send').disabled = false; $('stop').disabled = true;
  }
}

async function search(query) {
  try {
    const r = await fetch('v1/search', { method: 'POST', headers: headers(), body: JSON.stringify({ query, top: 5 }) });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
    setSources(j.data);
  } catch (e) { addMessage('error', e.message); }
}

$('ask').addEventListener('submit', e => {
  e.preventDefault();
  const q = $('question').value.trim();
  if (!q || controller) return;
  $('question').value = '';
  ask(q);
});
$('question').addEventListener('keydown', e => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('ask').requestSubmit(); } });
$('stop').addEventListener('click', () => controller && controller.abort());
$('search').addEventListener('submit', e => { e.preventDefault(); const q = $('query').value.trim(); if (q) search(q); });
loadModels();

// Live pages: a job's log, facts and phases from the server's event stream (Server-Sent Events), with follow / stop.
(function () {
  const log = document.getElementById("log");
  if (!log || !log.dataset.live) return;
  const summary = document.getElementById("job-summary");
  const follow = document.getElementById("follow");
  let following = true;
  if (follow) {
    follow.addEventListener("click", function () {
      following = !following;
      follow.textContent = following ? "Stop following" : "Follow";
      follow.setAttribute("aria-pressed", String(following));
    });
  }
  const source = new EventSource(log.dataset.live);
  // A browser holds few connections to one server: let this one go with the page.
  window.addEventListener("pagehide", function () { source.close(); });
  source.addEventListener("log", function (event) {
    // The server sends the lines as HTML it escaped and coloured.
    log.insertAdjacentHTML("beforeend", event.data);
    if (following) log.scrollTop = log.scrollHeight;
  });
  // The job's facts and phases, rendered again by the server when they changed.
  source.addEventListener("summary", function (event) {
    if (summary) summary.innerHTML = event.data;
  });
  source.addEventListener("end", function () { source.close(); window.location.reload(); });
})();

// The overview's queue table, re-rendered by the server whenever a job is queued, claimed or ends.
(function () {
  const queues = document.getElementById("queues");
  if (!queues || !queues.dataset.live) return;
  const source = new EventSource(queues.dataset.live);
  window.addEventListener("pagehide", function () { source.close(); });
  source.addEventListener("queues", function (event) { queues.innerHTML = event.data; });
})();

// Live follow of a deployment's container logs over a WebSocket (the console's session authenticates it).
(function () {
  const pre = document.getElementById("logs");
  if (!pre) return;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + pre.dataset.ws);
  socket.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "logs") {
      pre.textContent = data.text || "";
      pre.scrollTop = pre.scrollHeight;
    } else if (data.type === "error") {
      pre.textContent = data.message;
    }
  };
  socket.onclose = () => { pre.dataset.closed = "1"; };
})();

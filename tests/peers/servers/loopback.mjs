// Preloaded with `node --import` (tests/peers/install.py): a Node server that calls
// `listen(PORT)` binds every interface; this makes it bind 127.0.0.1 only.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  if (typeof port === "number" || (typeof port === "string" && /^[0-9]+$/.test(port))) {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};

// A minimal SMTP server for the journey test: enough of RFC 5321 for Plinth's
// mailer (lettre) to deliver to it; it keeps the messages it receives.
import net from "node:net";

export interface Mail {
  to: string[];
  data: string;
}

export async function startSmtpSink(): Promise<{ port: number; mails: Mail[]; close: () => void }> {
  const mails: Mail[] = [];
  const server = net.createServer((socket) => {
    let buffer = "";
    let inData = false;
    let to: string[] = [];
    let data: string[] = [];
    socket.write("220 sink ESMTP\r\n");
    socket.on("data", (chunk) => {
      buffer += chunk.toString("utf8");
      let index: number;
      while ((index = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, index);
        buffer = buffer.slice(index + 2);
        if (inData) {
          if (line === ".") {
            inData = false;
            mails.push({ to, data: decodeQuotedPrintable(data.join("\r\n")) });
            to = [];
            data = [];
            socket.write("250 OK queued\r\n");
          } else {
            data.push(line.startsWith(".") ? line.slice(1) : line);
          }
          continue;
        }
        const upper = line.toUpperCase();
        if (upper.startsWith("EHLO") || upper.startsWith("HELO")) socket.write("250-sink\r\n250 8BITMIME\r\n");
        else if (upper.startsWith("RCPT TO:")) {
          to.push(line.slice(8).trim());
          socket.write("250 OK\r\n");
        } else if (upper === "DATA") {
          inData = true;
          socket.write("354 go ahead\r\n");
        } else if (upper === "QUIT") {
          socket.end("221 bye\r\n");
        } else socket.write("250 OK\r\n");
      }
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as net.AddressInfo;
  return { port: address.port, mails, close: () => server.close() };
}

function decodeQuotedPrintable(s: string): string {
  return s.replace(/=\r\n/g, "").replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

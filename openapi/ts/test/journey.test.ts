// The frontend's main journey, through the generated client only, against the
// release binary started on a free port with a fresh database and an SMTP sink.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createPlinthClient, type Schemas } from "../src/index.js";
import { startSmtpSink, type Mail } from "./smtp.js";

const root = path.resolve(import.meta.dirname, "..", "..", "..", "..");
const binary = process.env.PLINTH_BIN ?? path.join(root, "target", "release", "plinth");
const PASSWORD = "a decent passphrase";

let server: ChildProcess;
let base = "";
let sink: Awaited<ReturnType<typeof startSmtpSink>>;

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function tokenIn(mails: Mail[], to: string, marker: string): string | undefined {
  for (const mail of [...mails].reverse()) {
    if (!mail.to.includes(`<${to}>`)) continue;
    const at = mail.data.indexOf(marker);
    if (at >= 0) return /^[0-9a-f.]+/.exec(mail.data.slice(at + marker.length))?.[0];
  }
  return undefined;
}

before(async () => {
  sink = await startSmtpSink();
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "plinth-journey-"));
  base = `http://127.0.0.1:${port}`;
  server = spawn(binary, ["serve", "--addr", `127.0.0.1:${port}`], {
    env: {
      PATH: process.env.PATH ?? "",
      DATABASE_URL: `sqlite://${path.join(dir, "plinth.db")}`,
      SMTP_URL: `smtp://127.0.0.1:${sink.port}`,
      APP_URL: "https://app.example.com",
      PLINTH_LOG: "warn",
      PLINTH_JOB_POLL_MS: "50",
    },
    stdio: "ignore",
  });
  const probe = createPlinthClient(base);
  await until("the server to be ready", async () => {
    try {
      const { response } = await probe.GET("/readyz");
      return response.ok ? true : undefined;
    } catch {
      return undefined;
    }
  });
});

after(() => {
  server?.kill("SIGTERM");
  sink?.close();
});

/** Whether a status keeps the plan's entitlements (grace aside): exhaustive, so a
 * status added to the API without a case here fails the type check. */
function entitled(status: Schemas["SubscriptionStatus"]): boolean {
  switch (status) {
    case "active":
    case "trialing":
      return true;
    case "past_due":
    case "canceled":
    case "unpaid":
    case "incomplete":
    case "incomplete_expired":
    case "paused":
      return false;
    default: {
      const unexpected: never = status;
      throw new Error(`unknown status ${String(unexpected)}`);
    }
  }
}

/** A flag rule is a union discriminated by `kind`: each kind has exactly its fields. */
const rollout: Schemas["RuleBody"] = { kind: "rollout", percentage: 10, by: "org", value: true };
const byRole: Schemas["RuleBody"] = {
  kind: "attribute",
  subject: "user",
  attribute: "role",
  operator: "one_of",
  values: ["admin"],
  value: true,
};
// @ts-expect-error an orgs rule has no percentage, and `sometimes` is no kind
const wrong: Schemas["RuleBody"] = { kind: "sometimes", percentage: 5, value: true };
void [rollout, byRole, wrong];

/** Registers, verifies through the mailed link and logs in; returns the session. */
async function signUp(email: string, name: string) {
  const anon = createPlinthClient(base);
  const registered = await anon.POST("/api/auth/register", { body: { email, password: PASSWORD, name } });
  assert.equal(registered.response.status, 202);
  const token = await until("the verification mail", () => tokenIn(sink.mails, email, "/verify-email?token="));
  const verified = await anon.POST("/api/auth/verify-email", { body: { token } });
  assert.equal(verified.response.status, 204);
  const login = await anon.POST("/api/auth/login", { body: { email, password: PASSWORD } });
  assert.ok(login.data, JSON.stringify(login.error));
  const session = { access: login.data.access_token, refresh: login.data.refresh_token };
  return { session, client: createPlinthClient(base, () => session.access), user: login.data.user };
}

test("register, verify, log in, build a team, read it, refresh and log out", async () => {
  const ada = await signUp("ada@example.com", "Ada Lovelace");
  assert.equal(ada.user.email_verified, true);
  const me = await ada.client.GET("/api/auth/me");
  assert.equal(me.data?.name, "Ada Lovelace");

  const org = await ada.client.POST("/api/orgs", { body: { name: "Analytical Engines" } });
  assert.equal(org.response.status, 201);
  assert.ok(org.data);
  assert.equal(org.data.role, "owner");
  const orgId = org.data.id;
  const params = { path: { org_id: orgId } };

  const invite = await ada.client.POST("/api/orgs/{org_id}/invitations", {
    params,
    body: { email: "bob@example.com", role: "admin" },
  });
  assert.equal(invite.response.status, 201, JSON.stringify(invite.error));
  const invitation = await until("the invitation mail", () => tokenIn(sink.mails, "bob@example.com", "/invitations/"));

  const preview = await createPlinthClient(base).GET("/api/invitations/{token}", { params: { path: { token: invitation } } });
  assert.equal(preview.data?.org_name, "Analytical Engines");

  const bob = await signUp("bob@example.com", "Bob Babbage");
  const accepted = await bob.client.POST("/api/invitations/{token}/accept", { params: { path: { token: invitation } } });
  assert.equal(accepted.data?.role, "admin");

  const changed = await ada.client.PATCH("/api/orgs/{org_id}/members/{user_id}", {
    params: { path: { org_id: orgId, user_id: bob.user.id } },
    body: { role: "viewer" },
  });
  assert.equal(changed.data?.role, "viewer");

  const members = await bob.client.GET("/api/orgs/{org_id}/members", { params });
  assert.deepEqual(
    members.data?.items.map((m) => [m.email, m.role]),
    [
      ["ada@example.com", "owner"],
      ["bob@example.com", "viewer"],
    ],
  );
  assert.equal(members.data?.next_cursor, null);

  const flags = await bob.client.GET("/api/orgs/{org_id}/flags", { params });
  assert.equal(flags.response.status, 200);
  assert.equal(typeof flags.data, "object");

  // Closed sets arrive as exact unions: a switch over them is exhaustive.
  const subscription = await bob.client.GET("/api/orgs/{org_id}/billing/subscription", { params });
  assert.ok(subscription.data, JSON.stringify(subscription.error));
  const status: Schemas["SubscriptionStatus"] = subscription.data.status;
  assert.equal(entitled(status), true);
  assert.equal(subscription.data.mode, "local");

  const activity = await bob.client.GET("/api/orgs/{org_id}/activity", { params });
  const actions = activity.data?.items.map((i) => i.action) ?? [];
  assert.ok(actions.includes("member.role_changed"), actions.join(", "));
  assert.ok(actions.includes("member.added"), actions.join(", "));

  // A custom role, and an API key the org's own systems use instead of a person.
  const role = await ada.client.POST("/api/orgs/{org_id}/roles", {
    params,
    body: { key: "support", name: "Support", description: "", permissions: ["org:read", "audit:read"] },
  });
  assert.equal(role.response.status, 201, JSON.stringify(role.error));
  const roleName: Schemas["RoleName"] = "support";
  const promoted = await ada.client.PATCH("/api/orgs/{org_id}/members/{user_id}", {
    params: { path: { org_id: orgId, user_id: bob.user.id } },
    body: { role: roleName },
  });
  assert.equal(promoted.data?.role, "support");
  const created = await ada.client.POST("/api/orgs/{org_id}/api-keys", {
    params,
    body: { name: "reporting", permissions: ["org:read", "usage:read"] },
  });
  assert.equal(created.response.status, 201, JSON.stringify(created.error));
  assert.ok(created.data?.key.startsWith("plk_"));
  const machine = createPlinthClient(base, () => created.data?.key);
  const seen = await machine.GET("/api/orgs/{org_id}", { params });
  assert.equal(seen.data?.role, null);
  assert.deepEqual(seen.data?.permissions, ["org:read", "usage:read"]);
  assert.equal((await machine.GET("/api/auth/me")).response.status, 401);
  assert.equal((await machine.GET("/api/orgs/{org_id}/audit-logs", { params })).response.status, 403);

  const refreshed = await createPlinthClient(base).POST("/api/auth/refresh", { body: { refresh_token: ada.session.refresh } });
  assert.ok(refreshed.data, JSON.stringify(refreshed.error));
  ada.session.access = refreshed.data.access_token;
  ada.session.refresh = refreshed.data.refresh_token;
  assert.equal((await ada.client.GET("/api/auth/me")).response.status, 200);

  const out = await ada.client.POST("/api/auth/logout");
  assert.equal(out.response.status, 204);
  const after = await ada.client.GET("/api/auth/me");
  assert.equal(after.response.status, 401);
  assert.equal(after.error?.type, "/problems/unauthorized");
});

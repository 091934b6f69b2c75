// The Plinth API client: openapi-fetch typed by the generated `schema.d.ts`.
import createClient, { type Middleware } from "openapi-fetch";
import type { paths, components } from "./schema.js";

export type { paths, components };
export type Schemas = components["schemas"];

/**
 * A client for `baseUrl`; `token()` supplies the credential, if any: a member's
 * access token, or an org API key (`plk_...`) for that org's operations.
 */
export function createPlinthClient(baseUrl: string, token: () => string | undefined = () => undefined) {
  const client = createClient<paths>({ baseUrl });
  const auth: Middleware = {
    onRequest({ request }) {
      const t = token();
      if (t) request.headers.set("authorization", `Bearer ${t}`);
      return request;
    },
  };
  client.use(auth);
  return client;
}

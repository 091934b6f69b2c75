//! Outgoing email: templates, the outbox table, and delivery over SMTP from the job
//! queue.
//!
//! Every mail is written to `mail_outbox` in the caller's transaction. With SMTP_URL
//! set, a `mail.send` job delivers it (a mail server outage delays mail, it does not
//! fail the request) and the bodies, which carry live tokens, are cleared once sent.
//! Without SMTP_URL (development) the mail is logged and stays in the outbox, so a
//! developer can follow its link.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use uuid::Uuid;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::params;
use crate::runtime::jobs::{JobContext, JobHandler, JobHost, Jobs};
use crate::storage::db::Db;
use crate::storage::db::now_rfc3339;
use crate::storage::sql::{Handle, Sql};

pub const SEND_JOB: &str = "mail.send";
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The built-in templates: (text, html), with `{{name}}` placeholders.
pub enum Template {
    VerifyEmail,
    PasswordReset,
    AccountExists,
}

impl Template {
    fn sources(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            Template::VerifyEmail => (
                "Confirm your email address",
                include_str!("../../templates/verify_email.txt"),
                include_str!("../../templates/verify_email.html"),
            ),
            Template::PasswordReset => (
                "Reset your password",
                include_str!("../../templates/password_reset.txt"),
                include_str!("../../templates/password_reset.html"),
            ),
            Template::AccountExists => (
                "You already have an account",
                include_str!("../../templates/account_exists.txt"),
                include_str!("../../templates/account_exists.html"),
            ),
        }
    }

    /// Fills the placeholders; values are HTML-escaped in the HTML body.
    pub fn render(&self, to: &str, vars: &[(&str, &str)]) -> Mail {
        let (subject, text, html) = self.sources();
        render(to, subject, text, html, vars)
    }
}

/// Renders any template pair (plugins bring their own): `{{key}}` placeholders are
/// replaced in the subject, the text and the HTML body, HTML-escaped in the latter.
pub fn render(to: &str, subject: &str, text: &str, html: &str, vars: &[(&str, &str)]) -> Mail {
    let mut subject = subject.to_string();
    let mut text = text.to_string();
    let mut html = html.to_string();
    for (key, value) in vars {
        let placeholder = format!("{{{{{key}}}}}");
        subject = subject.replace(&placeholder, value);
        text = text.replace(&placeholder, value);
        html = html.replace(&placeholder, &escape_html(value));
    }
    Mail {
        to: to.to_string(),
        subject,
        text,
        html,
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Queues mail; held by the platform.
#[derive(Clone)]
pub struct Mailer {
    smtp: Option<Arc<AsyncSmtpTransport<Tokio1Executor>>>,
    from: Mailbox,
}

impl Mailer {
    pub(crate) fn new(config: &Config) -> Result<Self> {
        let from: Mailbox = config.mail_from.parse().map_err(|e| {
            Error::internal(format!(
                "PLINTH_MAIL_FROM `{}` is not an address: {e}",
                config.mail_from
            ))
        })?;
        let smtp = match &config.smtp_url {
            None => None,
            Some(url) => Some(Arc::new(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| Error::internal(format!("SMTP_URL is not usable: {e}")))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            )),
        };
        Ok(Mailer { smtp, from })
    }

    /// Writes the mail to the outbox on `conn` (the caller's transaction) and, with
    /// SMTP configured, enqueues its delivery there too.
    pub fn send(&self, conn: &impl Handle, jobs: &Jobs, mail: &Mail) -> Result<Uuid> {
        let conn = &Sql::from(conn);
        let id = Uuid::now_v7();
        conn.execute(
            "INSERT INTO mail_outbox (id, to_address, subject, text_body, html_body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id.to_string(),
                mail.to,
                mail.subject,
                mail.text,
                mail.html,
                now_rfc3339()
            ],
        )?;
        if self.smtp.is_some() {
            jobs.enqueue(conn, SEND_JOB, &json!({ "id": id }))?;
        } else {
            tracing::info!(
                to = %mail.to,
                subject = %mail.subject,
                body = %mail.text,
                "mail not sent (no SMTP_URL); kept in mail_outbox"
            );
        }
        Ok(id)
    }

    /// The `mail.send` job: delivers one outbox row.
    pub(crate) fn job<H: JobHost>(&self) -> JobHandler<H> {
        let mailer = self.clone();
        JobHandler::new(SEND_JOB, move |ctx: JobContext<H>| {
            let mailer = mailer.clone();
            async move {
                let id = ctx.payload["id"].as_str().unwrap_or_default().to_string();
                mailer
                    .deliver(ctx.platform.db(), id)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
    }

    async fn deliver(&self, db: &Db, id: String) -> Result<()> {
        let Some(smtp) = &self.smtp else {
            return Ok(());
        };
        let lookup = id.clone();
        let row = db
            .call(move |conn| {
                conn.query_opt(
                    "SELECT to_address, subject, text_body, html_body FROM mail_outbox
                     WHERE id = ?1 AND sent_at IS NULL",
                    params![lookup],
                    |r| {
                        Ok(Mail {
                            to: r.get(0)?,
                            subject: r.get(1)?,
                            text: r.get(2)?,
                            html: r.get(3)?,
                        })
                    },
                )
            })
            .await?;
        // Already sent (a retried job after a crash between send and record).
        let Some(mail) = row else { return Ok(()) };
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| Error::internal(format!("bad recipient {}: {e}", mail.to)))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(Error::internal)?;
        smtp.send(message).await.map_err(Error::internal)?;
        db.call(move |conn| {
            conn.execute(
                "UPDATE mail_outbox SET sent_at = ?2, text_body = '', html_body = '' WHERE id = ?1",
                params![id, now_rfc3339()],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_placeholders_and_escape_html() {
        let mail = Template::VerifyEmail.render(
            "a@b.co",
            &[
                ("name", "<Ann & Bob>"),
                ("link", "https://app/verify-email?token=abc"),
            ],
        );
        assert!(mail.text.contains("Hello <Ann & Bob>,"));
        assert!(mail.html.contains("Hello &lt;Ann &amp; Bob&gt;,"));
        assert!(mail.text.contains("https://app/verify-email?token=abc"));
        assert!(!mail.text.contains("{{"));
        assert!(!mail.html.contains("{{"));
    }
}

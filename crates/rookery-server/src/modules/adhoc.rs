//! XEP-0050 Ad-Hoc Commands (multi-step sessions with next/prev/complete/cancel) and the
//! XEP-0133 Service Administration commands, offered by each served domain to administrators.

use super::{IqHandler, IqReply, IqRequest, IqResult, IqType, Module, On, Registry, SessionHook};
use crate::admin::{self, AdminError, Motd};
use crate::forms::{Field, Form};
use crate::Server;
use async_trait::async_trait;
use dashmap::DashMap;
use rookery_core::stanza::{ErrorType, StanzaError};
use rookery_core::{Element, Jid};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NS: &str = "http://jabber.org/protocol/commands";
const ADMIN: &str = "http://jabber.org/protocol/admin";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// An unfinished multi-step session is dropped after this long without activity.
const SESSION_TTL: Duration = Duration::from_secs(600);

/// What one command does: a fixed number of form pages, then a run over the answers.
#[async_trait]
trait Command: Send + Sync {
    fn node(&self) -> &'static str;
    fn name(&self) -> &'static str;
    /// Number of pages; 0 runs at once.
    fn pages(&self) -> usize {
        1
    }
    /// Page `page` of the form, given the answers to the earlier pages.
    async fn page(
        &self,
        _server: &Server,
        _host: &str,
        _page: usize,
        _answers: &[Form],
    ) -> Result<Form, StanzaError> {
        Err(StanzaError::bad_request())
    }
    /// Runs with every page answered; returns a note and optionally a result form.
    async fn run(&self, server: &Server, host: &str, answers: &[Form])
        -> Result<Done, StanzaError>;
}

struct Done {
    note: String,
    result: Option<Form>,
}

impl Done {
    fn note(text: impl Into<String>) -> Result<Done, StanzaError> {
        Ok(Done {
            note: text.into(),
            result: None,
        })
    }

    /// A result form of the admin FORM_TYPE with these fields.
    fn result(fields: Vec<Field>) -> Result<Done, StanzaError> {
        let mut all = vec![Field::hidden("FORM_TYPE", ADMIN)];
        all.extend(fields);
        Ok(Done {
            note: String::new(),
            result: Some(Form::new("result", None, all)),
        })
    }
}

struct Session {
    node: String,
    owner: Jid,
    host: String,
    answers: Vec<Form>,
    touched: Instant,
}

pub struct AdHoc {
    commands: Vec<Arc<dyn Command>>,
    sessions: DashMap<String, Session>,
}

impl Default for AdHoc {
    fn default() -> Self {
        AdHoc {
            commands: vec![
                Arc::new(AddUser),
                Arc::new(DeleteUser),
                Arc::new(DisableUser(true)),
                Arc::new(DisableUser(false)),
                Arc::new(ChangePassword),
                Arc::new(OnlineUsers),
                Arc::new(Count { online: true }),
                Arc::new(Count { online: false }),
                Arc::new(EndSession),
                Arc::new(Announce),
                Arc::new(SetMotd { edit: false }),
                Arc::new(SetMotd { edit: true }),
                Arc::new(DeleteMotd),
            ],
            sessions: DashMap::new(),
        }
    }
}

impl Module for AdHoc {
    fn name(&self) -> &'static str {
        "adhoc"
    }
    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(NS, "command", On::Server, self.clone());
        reg.server_feature(NS);
        reg.disco_node(NS, self.clone());
        for c in &self.commands {
            reg.disco_node(c.node(), self.clone());
        }
        reg.hook(self);
    }
}

fn admin_form(title: &str, fields: Vec<Field>) -> Form {
    let mut all = vec![Field::hidden("FORM_TYPE", ADMIN)];
    all.extend(fields);
    Form::new("form", Some(title), all)
}

/// The XEP-0050 error condition elements (`<bad-action/>`, `<bad-sessionid/>`...).
fn command_error(e: StanzaError, specific: &str) -> StanzaError {
    let mut e = e;
    e.extra = Some(Box::new(Element::new(specific, NS)));
    e
}

fn admin_error(e: AdminError) -> StanzaError {
    use crate::accounts::AccountError as A;
    match e {
        AdminError::Account(A::Exists) => StanzaError::conflict().with_text(e.to_string()),
        AdminError::Account(A::NotFound) => StanzaError::item_not_found().with_text(e.to_string()),
        AdminError::Account(A::InvalidJid(_)) => StanzaError::jid_malformed()
            .with_type(ErrorType::Modify)
            .with_text(e.to_string()),
        AdminError::Account(A::WeakPassword)
        | AdminError::Account(A::UnknownHost(_))
        | AdminError::UnknownHost(_) => StanzaError::not_acceptable().with_text(e.to_string()),
        AdminError::Account(A::Storage(_)) | AdminError::Storage(_) => {
            StanzaError::internal_server_error()
        }
    }
}

impl AdHoc {
    fn find(&self, node: &str) -> Option<Arc<dyn Command>> {
        self.commands.iter().find(|c| c.node() == node).cloned()
    }

    fn allowed(server: &Server, from: &Jid, host: &str) -> bool {
        // Administrators of this server, signed in here (not a remote JID with the same name).
        server.config.is_local_host(from.domain().as_str())
            && admin::is_admin(server, &from.to_bare())
            && server.config.is_local_host(host)
    }

    /// `<command/>` answer: status, session, the page's form and the allowed actions.
    fn page_reply(node: &str, sid: &str, form: &Form, page: usize, pages: usize) -> Element {
        let last = page + 1 >= pages;
        let mut actions = Element::new("actions", NS)
            .with_attr("execute", if last { "complete" } else { "next" });
        if page > 0 {
            actions.push_child(Element::new("prev", NS));
        }
        actions.push_child(Element::new(if last { "complete" } else { "next" }, NS));
        Element::new("command", NS)
            .with_attr("node", node)
            .with_attr("sessionid", sid)
            .with_attr("status", "executing")
            .with_child(actions)
            .with_child(form.to_element())
    }

    fn completed(node: &str, sid: &str, done: Done) -> Element {
        let mut c = Element::new("command", NS)
            .with_attr("node", node)
            .with_attr("sessionid", sid)
            .with_attr("status", "completed");
        if !done.note.is_empty() {
            c.push_child(
                Element::new("note", NS)
                    .with_attr("type", "info")
                    .with_text(done.note),
            );
        }
        if let Some(r) = done.result {
            c.push_child(r.to_element());
        }
        c
    }

    fn expire(&self) {
        self.sessions
            .retain(|_, s| s.touched.elapsed() < SESSION_TTL);
    }

    async fn execute(&self, server: &Server, req: &IqRequest, host: &str) -> IqResult {
        let c = req.payload();
        let node = c.attr("node").ok_or_else(StanzaError::bad_request)?;
        let cmd = self
            .find(node)
            .ok_or_else(|| StanzaError::item_not_found().with_text("no such command"))?;
        if !Self::allowed(server, &req.from, host) {
            return Err(StanzaError::forbidden().with_text("administrators only"));
        }
        let action = c.attr("action").unwrap_or("execute");
        if !["execute", "next", "prev", "complete", "cancel"].contains(&action) {
            return Err(command_error(
                StanzaError::bad_request(),
                "malformed-action",
            ));
        }
        self.expire();
        let Some(sid) = c.attr("sessionid") else {
            if action != "execute" {
                return Err(command_error(StanzaError::bad_request(), "bad-action"));
            }
            let sid = format!("{:x}", rand::random::<u64>());
            if cmd.pages() == 0 {
                let done = cmd.run(server, host, &[]).await?;
                return Ok(IqReply::Payload(Self::completed(node, &sid, done)));
            }
            let form = cmd.page(server, host, 0, &[]).await?;
            self.sessions.insert(
                sid.clone(),
                Session {
                    node: node.to_string(),
                    owner: req.from.clone(),
                    host: host.to_string(),
                    answers: vec![],
                    touched: Instant::now(),
                },
            );
            return Ok(IqReply::Payload(Self::page_reply(
                node,
                &sid,
                &form,
                0,
                cmd.pages(),
            )));
        };
        let sid = sid.to_string();
        let Some(mut session) = self.sessions.get_mut(&sid) else {
            return Err(command_error(StanzaError::bad_request(), "bad-sessionid"));
        };
        if session.owner != req.from || session.node != node || session.host != host {
            return Err(command_error(StanzaError::bad_request(), "bad-sessionid"));
        }
        session.touched = Instant::now();
        let page = session.answers.len();
        let answers = session.answers.iter().map(clone_form).collect::<Vec<_>>();
        drop(session);
        if action == "cancel" {
            self.sessions.remove(&sid);
            return Ok(IqReply::Payload(
                Element::new("command", NS)
                    .with_attr("node", node)
                    .with_attr("sessionid", sid)
                    .with_attr("status", "canceled"),
            ));
        }
        if action == "prev" {
            if page == 0 {
                return Err(command_error(StanzaError::bad_request(), "bad-action"));
            }
            let earlier = &answers[..page - 1];
            let form = cmd.page(server, host, page - 1, earlier).await?;
            if let Some(mut s) = self.sessions.get_mut(&sid) {
                s.answers.pop();
            }
            return Ok(IqReply::Payload(Self::page_reply(
                node,
                &sid,
                &form,
                page - 1,
                cmd.pages(),
            )));
        }
        // execute, next or complete: the submitted page is checked against the page offered.
        let last = page + 1 >= cmd.pages();
        if (action == "next" && last) || (action == "complete" && !last) {
            return Err(command_error(StanzaError::bad_request(), "bad-action"));
        }
        let offered = cmd.page(server, host, page, &answers).await?;
        let submitted = c
            .get_child("x", crate::forms::NS)
            .map(Form::parse)
            .transpose()?
            .ok_or_else(|| StanzaError::bad_request().with_text("a submitted form is needed"))?;
        offered.validate(&submitted)?;
        let mut answers = answers;
        answers.push(submitted);
        if last {
            self.sessions.remove(&sid);
            let done = cmd.run(server, host, &answers).await?;
            return Ok(IqReply::Payload(Self::completed(node, &sid, done)));
        }
        let form = cmd.page(server, host, page + 1, &answers).await?;
        if let Some(mut s) = self.sessions.get_mut(&sid) {
            s.answers = answers;
        }
        Ok(IqReply::Payload(Self::page_reply(
            node,
            &sid,
            &form,
            page + 1,
            cmd.pages(),
        )))
    }

    /// disco#items on the commands node, disco#info on a command node (§2.2, §2.3).
    fn disco(&self, server: &Server, req: &IqRequest, host: &str) -> IqResult {
        let p = req.payload();
        let node = p.attr("node").unwrap_or_default();
        let allowed = Self::allowed(server, &req.from, host);
        if p.ns() == ITEMS && node == NS {
            let mut q = Element::new("query", ITEMS).with_attr("node", NS);
            if allowed {
                for c in &self.commands {
                    q.push_child(
                        Element::new("item", ITEMS)
                            .with_attr("jid", host)
                            .with_attr("node", c.node())
                            .with_attr("name", c.name()),
                    );
                }
            }
            return Ok(IqReply::Payload(q));
        }
        if p.ns() == INFO {
            if node == NS {
                return Ok(IqReply::Payload(
                    Element::new("query", INFO)
                        .with_attr("node", NS)
                        .with_child(
                            Element::new("identity", INFO)
                                .with_attr("category", "automation")
                                .with_attr("type", "command-list")
                                .with_attr("name", "Commands"),
                        ),
                ));
            }
            if let Some(c) = self.find(node) {
                if !allowed {
                    return Err(StanzaError::forbidden());
                }
                let q = Element::new("query", INFO)
                    .with_attr("node", node)
                    .with_child(
                        Element::new("identity", INFO)
                            .with_attr("category", "automation")
                            .with_attr("type", "command-node")
                            .with_attr("name", c.name()),
                    )
                    .with_child(Element::new("feature", INFO).with_attr("var", NS))
                    .with_child(Element::new("feature", INFO).with_attr("var", crate::forms::NS));
                return Ok(IqReply::Payload(q));
            }
        }
        Err(StanzaError::item_not_found())
    }
}

fn clone_form(f: &Form) -> Form {
    Form::parse(&f.to_element()).expect("a form we wrote parses")
}

#[async_trait]
impl IqHandler for AdHoc {
    async fn handle_iq(&self, server: &Server, req: IqRequest) -> IqResult {
        let host = match &req.target {
            super::Target::Server(h) => h.clone(),
            super::Target::Account(_) => return Err(StanzaError::service_unavailable()),
        };
        let p = req.payload();
        if p.ns() == NS && p.name() == "command" {
            if req.kind != IqType::Set {
                return Err(StanzaError::bad_request());
            }
            return self.execute(server, &req, &host).await;
        }
        if req.kind != IqType::Get {
            return Err(StanzaError::bad_request());
        }
        self.disco(server, &req, &host)
    }
}

/// The message of the day reaches each session as it signs in (XEP-0133 §4.24).
#[async_trait]
impl SessionHook for AdHoc {
    async fn on_available(&self, server: &Server, session: &crate::session::SessionHandle) {
        admin::send_motd(server, session).await;
    }
}

fn first_jids(f: &Form, var: &str) -> Vec<String> {
    f.values(var)
        .iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

struct AddUser;
#[async_trait]
impl Command for AddUser {
    fn node(&self) -> &'static str {
        "http://jabber.org/protocol/admin#add-user"
    }
    fn name(&self) -> &'static str {
        "Add User"
    }
    async fn page(&self, _: &Server, _: &str, _: usize, _: &[Form]) -> Result<Form, StanzaError> {
        Ok(admin_form(
            "Adding a User",
            vec![
                Field::jid_single(
                    "accountjid",
                    "The Jabber ID for the account to be added",
                    None,
                )
                .required(),
                Field::text_private("password", "The password for this account").required(),
                Field::text_private("password-verify", "Retype password").required(),
            ],
        ))
    }
    async fn run(&self, server: &Server, _: &str, a: &[Form]) -> Result<Done, StanzaError> {
        let f = &a[0];
        let (jid, pw) = (f.value("accountjid").unwrap_or(""), f.value("password"));
        if pw != f.value("password-verify") {
            return Err(StanzaError::not_acceptable().with_text("The passwords do not match"));
        }
        let user = admin::add_user(server, jid, pw.unwrap_or(""))
            .await
            .map_err(admin_error)?;
        Done::note(format!("Account {user} created"))
    }
}

/// Two pages: which accounts, then a confirmation naming them (deleting loses their data).
struct DeleteUser;
#[async_trait]
impl Command for DeleteUser {
    fn node(&self) -> &'static str {
        "http://jabber.org/protocol/admin#delete-user"
    }
    fn name(&self) -> &'static str {
        "Delete User"
    }
    fn pages(&self) -> usize {
        2
    }
    async fn page(
        &self,
        server: &Server,
        _: &str,
        page: usize,
        answers: &[Form],
    ) -> Result<Form, StanzaError> {
        if page == 0 {
            return Ok(admin_form(
                "Deleting a User",
                vec![Field::jid_multi("accountjids", "The Jabber ID(s) to delete", &[]).required()],
            ));
        }
        let mut users = vec![];
        for j in first_jids(&answers[0], "accountjids") {
            let user = crate::accounts::parse_user(&server.config, &j)
                .map_err(|e| admin_error(e.into()))?;
            if server
                .storage
                .credentials(&user)
                .await
                .ok()
                .flatten()
                .is_none()
            {
                return Err(StanzaError::item_not_found().with_text(format!("no account {user}")));
            }
            users.push(user.to_string());
        }
        Ok(admin_form(
            "Deleting a User",
            vec![
                Field::fixed(&format!(
                    "Delete {} and everything stored for them?",
                    users.join(", ")
                )),
                Field::boolean("confirm", "Yes, delete", false).required(),
            ],
        ))
    }
    async fn run(&self, server: &Server, _: &str, a: &[Form]) -> Result<Done, StanzaError> {
        let confirmed = a[1].value("confirm").and_then(crate::forms::parse_bool);
        if confirmed != Some(true) {
            return Done::note("Nothing was deleted");
        }
        let mut gone = vec![];
        for j in first_jids(&a[0], "accountjids") {
            gone.push(
                admin::delete_user(server, &j)
                    .await
                    .map_err(admin_error)?
                    .to_string(),
            );
        }
        Done::note(format!("Deleted: {}", gone.join(", ")))
    }
}

struct DisableUser(bool);
#[async_trait]
impl Command for DisableUser {
    fn node(&self) -> &'static str {
        if self.0 {
            "http://jabber.org/protocol/admin#disable-user"
        } else {
            "http://jabber.org/protocol/admin#reenable-user"
        }
    }
    fn name(&self) -> &'static str {
        if self.0 {
            "Disable User"
        } else {
            "Re-Enable User"
        }
    }
    async fn page(&self, _: &Server, _: &str, _: usize, _: &[Form]) -> Result<Form, StanzaError> {
        Ok(admin_form(
            if self.0 {
                "Disabling a User"
            } else {
                "Re-Enabling a User"
            },
            vec![Field::jid_multi("accountjids", "The Jabber ID(s)", &[]).required()],
        ))
    }
    async fn run(&self, server: &Server, _: &str, a: &[Form]) -> Result<Done, StanzaError> {
        let mut done = vec![];
        for j in first_jids(&a[0], "accountjids") {
            done.push(
                admin::set_disabled(server, &j, self.0)
                    .await
                    .map_err(admin_error)?
                    .to_string(),
            );
        }
        let verb = if self.0 { "Disabled" } else { "Re-enabled" };
        Done::note(format!("{verb}: {}", done.join(", ")))
    }
}

struct ChangePassword;
#[async_trait]
impl Command for ChangePassword {
    fn node(&self) -> &'static str {
        "http://jabber.org/protocol/admin#change-user-password"
    }
    fn name(&self) -> &'static str {
        "Change User Password"
    }
    async fn page(&self, _: &Server, _: &str, _: usize, _: &[Form]) -> Result<Form, StanzaError> {
        Ok(admin_form(
            "Changing a User Password",
            vec![
                Field::jid_single("accountjid", "The Jabber ID", None).required(),
                Field::text_private("password", "The new password").required(),
            ],
        ))
    }
    async fn run(&self, server: &Server, _: &str, a: &[Form]) -> Result<Done, StanzaError> {
        let f = &a[0];
        let user = admin::change_password(
            server,
            f.value("accountjid").unwrap_or(""),
            f.value("password").unwrap_or(""),
        )
        .await
        .map_err(admin_error)?;
        Done::note(format!("Password changed for {user}"))
    }
}

struct OnlineUsers;
#[async_trait]
impl Command for OnlineUsers {
    fn node(&self) -> &'static str {
        "http://jabber.org/protocol/admin#get-online-users-list"
    }
    fn name(&self) -> &'static str {
        "Get List of Online Users"
    }
    fn pages(&self) -> usize {
        0
    }
    async fn run(&self, server: &Server, host: &str, _: &[Form]) -> Result<Done, StanzaError> {
        let users = admin::online_users(server, Some(host));
        Done::result(vec![Field::jid_multi(
            "onlineuserjids",
            "The list of all online users",
            &users,
        )])
    }
}

/// A command that answers one number in a result form.
struct Count {
    online: bool,
}
#[async_trait]
impl Command for Count {
    fn node(&self) -> &'static str {
        if self.online {
            "http://jabber.org/protocol/admin#get-online-users-num"
        } else {
            "http://jabber.org/protocol/admin#get-registered-users-num"
        }
    }
    fn name(&self) -> &'static str {
        if self.online {
            "Get Number of Online Users"
        } else {
            "Get Number of Registered Users"
        }
    }
    fn pages(&self) -> usize {
        0
    }
    async fn run(&self, server: &Server, host: &str, _: &[Form]) -> Result<Done, StanzaError> {
        let (var, label, n) = if self.online {
            let n = admin::online_users(server, Some(host)).len();
            ("onlineusersnum", "The number of online users", n)
        } else {
            let n = admin::registered_users(server, host)
                .await
                .map_err(admin_error)?
                .len();
            ("registeredusersnum", "The number of registered users", n)
        };
        Done::result(vec![Field::text(var, label, &n.to_string())])
    }
}

struct EndSession;
#[async_trait]
impl Command for EndSession {
    fn node(&self) -> &'static str {
        "http://jabber.org/protocol/admin#end-user-session"
    }
    fn name(&self) -> &'static str {
        "End User Session"
    }
    async fn page(&self, _: &Server, _: &str, _: usize, _: &[Form]) -> Result<Form, StanzaError> {
        Ok(admin_form(
            "Ending a User Session",
            vec![Field::jid_multi(
                "accountjids",
                "The Jabber ID(s) whose sessions end (a full JID ends one session)",
                &[],
            )
            .required()],
        ))
    }
    async fn run(&self, server: &Server, _: &str, a: &[Form]) -> Result<Done, StanzaError> {
        let mut n = 0;
        for j in first_jids(&a[0], "accountjids") {
            n += admin::end_sessions(server, &j).await.map_err(admin_error)?;
        }
        Done::note(format!("{n} session(s) ended"))
    }
}

struct Announce;
#[async_trait]
impl Command for Announce {
    fn node(&self) -> &'static str {
        "http://jabber.org/protocol/admin#announce"
    }
    fn name(&self) -> &'static str {
        "Send Announcement to Online Users"
    }
    async fn page(&self, _: &Server, _: &str, _: usize, _: &[Form]) -> Result<Form, StanzaError> {
        Ok(admin_form(
            "Making an Announcement",
            vec![
                Field::text("subject", "Subject", ""),
                Field::text_multi("announcement", "Announcement", "").required(),
            ],
        ))
    }
    async fn run(&self, server: &Server, host: &str, a: &[Form]) -> Result<Done, StanzaError> {
        let f = &a[0];
        let n = admin::announce(
            server,
            host,
            f.value("subject"),
            &f.text("announcement").unwrap_or_default(),
        )
        .map_err(admin_error)?;
        Done::note(format!("Announcement sent to {n} session(s)"))
    }
}

struct SetMotd {
    edit: bool,
}
#[async_trait]
impl Command for SetMotd {
    fn node(&self) -> &'static str {
        if self.edit {
            "http://jabber.org/protocol/admin#edit-motd"
        } else {
            "http://jabber.org/protocol/admin#set-motd"
        }
    }
    fn name(&self) -> &'static str {
        if self.edit {
            "Edit Message of the Day"
        } else {
            "Set Message of the Day"
        }
    }
    async fn page(
        &self,
        server: &Server,
        host: &str,
        _: usize,
        _: &[Form],
    ) -> Result<Form, StanzaError> {
        // Editing starts from the current message.
        let current = if self.edit {
            admin::motd(server, host)
                .await
                .map_err(admin_error)?
                .unwrap_or_default()
        } else {
            Motd::default()
        };
        Ok(admin_form(
            "Message of the Day",
            vec![
                Field::text("subject", "Subject", &current.subject),
                Field::text_multi("motd", "Message of the day", &current.body).required(),
            ],
        ))
    }
    async fn run(&self, server: &Server, host: &str, a: &[Form]) -> Result<Done, StanzaError> {
        let f = &a[0];
        let m = Motd {
            subject: f.value("subject").unwrap_or_default().to_string(),
            body: f.text("motd").unwrap_or_default(),
        };
        admin::set_motd(server, host, Some(&m))
            .await
            .map_err(admin_error)?;
        Done::note("Message of the day set")
    }
}

struct DeleteMotd;
#[async_trait]
impl Command for DeleteMotd {
    fn node(&self) -> &'static str {
        "http://jabber.org/protocol/admin#delete-motd"
    }
    fn name(&self) -> &'static str {
        "Delete Message of the Day"
    }
    fn pages(&self) -> usize {
        0
    }
    async fn run(&self, server: &Server, host: &str, _: &[Form]) -> Result<Done, StanzaError> {
        admin::set_motd(server, host, None)
            .await
            .map_err(admin_error)?;
        Done::note("Message of the day deleted")
    }
}

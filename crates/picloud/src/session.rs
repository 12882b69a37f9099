//! `picloud login` and `picloud logout`: a session on a server, kept in a profile.

use std::io::{IsTerminal, Write as _};

use anyhow::Context;
use reqwest::StatusCode;

use crate::client::{Refusal, Server, UsageError};
use crate::config::{LoginArgs, ProfileArgs};
use crate::profiles::{Profile, Profiles};

/// Signs in and keeps the session in the profile (replacing what it held).
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let server = Server::new(&args.url, String::new())?;
    let password = match args.password.filter(|p| !p.is_empty()) {
        Some(password) => password,
        None if std::io::stdin().is_terminal() => {
            let password = rpassword::prompt_password(format!(
                "Password of {} at {}: ",
                args.username,
                server.url()
            ))
            .context("cannot read the password at the terminal")?;
            anyhow::ensure!(!password.is_empty(), "the password is empty");
            password
        }
        None => crate::password_from_stdin()?,
    };
    let session = server.login(&args.username, &password).await?;
    let mut profiles = Profiles::load(&args.profile)?;
    profiles.set(
        &args.profile.profile,
        Profile {
            url: args.url.to_string(),
            username: args.username.clone(),
            token: session.token,
        },
    );
    profiles.save()?;
    writeln!(
        std::io::stdout().lock(),
        "logged in to {} as {}; the session is in profile '{}' ({})",
        server.url(),
        args.username,
        args.profile.profile,
        profiles.path().display()
    )?;
    Ok(())
}

/// Ends the profile's session on the server, then forgets it. A session that had already ended
/// (expired, logged out elsewhere) is forgotten too; one the server could not be asked about is
/// kept, to try again.
pub async fn logout(args: ProfileArgs) -> anyhow::Result<()> {
    let mut profiles = Profiles::load(&args)?;
    let Some(profile) = profiles.remove(&args.profile) else {
        return Err(UsageError(format!(
            "there is no profile '{}' in {}: nothing to log out",
            args.profile,
            profiles.path().display()
        ))
        .into());
    };
    let server = Server::new(&profile.url()?, profile.token.clone())?;
    match server.logout().await {
        Ok(()) => {}
        Err(err)
            if err
                .downcast_ref::<Refusal>()
                .is_some_and(|refusal| refusal.status == StatusCode::UNAUTHORIZED) => {}
        Err(err) => {
            return Err(err.context(format!(
                "cannot end the session of profile '{}'; the profile keeps it",
                args.profile
            )))
        }
    }
    profiles.save()?;
    writeln!(
        std::io::stdout().lock(),
        "logged out {} at {}; profile '{}' removed",
        profile.username,
        server.url(),
        args.profile
    )?;
    Ok(())
}

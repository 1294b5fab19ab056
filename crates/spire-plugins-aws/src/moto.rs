//! moto, the AWS API mock, for tests and benchmarks (feature `test-support`): started on a
//! free loopback port from the venv `conformance/moto/setup.sh` builds, and seeded with an
//! EC2 instance that has a security group, an instance profile with a role, and a `Name`
//! tag, so that `aws_iid`'s server finds every kind of selector it resolves.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::api::{AwsClient, EnvFn};
use crate::server::Session;

/// The account moto reports for its resources.
pub const ACCOUNT: &str = "123456789012";

/// A running `python -m moto.server`, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Runs `setup_script` (which prints the venv's python) and starts moto on a free port;
    /// `Err` when the venv cannot be built or moto does not listen within 30 s.
    pub async fn start(setup_script: &Path) -> Result<Self, String> {
        let out = Command::new("bash")
            .arg(setup_script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", setup_script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed", setup_script.display()));
        }
        let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting moto: {e}"))?;
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(moto);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("moto did not listen on port {port} within 30 s"))
    }

    /// A client whose calls go to this moto, and the static session moto accepts.
    pub fn client(&self) -> (AwsClient, Session) {
        let url = self.url.clone();
        let env: EnvFn = Arc::new(move |k| (k == "AWS_ENDPOINT_URL").then(|| url.clone()));
        let client = AwsClient::with_env(Duration::from_secs(10), Arc::new(SystemTime::now), env);
        let session = Session {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            assume_role: String::new(),
            partition: "aws".into(),
        };
        (client, session)
    }

    /// The environment that points a server process at this moto.
    pub fn server_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.url.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ]
    }

    /// Creates, in `region`, security group `<name>-sg`, role `<name>-role` in instance
    /// profile `<name>-profile`, and one running instance with them and `tags`.
    pub async fn seed_instance(
        &self,
        region: &str,
        name: &str,
        tags: &[(&str, &str)],
    ) -> Result<Seeded, String> {
        let (client, session) = self.client();
        let ec2 = |action: &'static str, params: Vec<(&'static str, String)>| {
            let (client, session) = (&client, &session);
            async move {
                let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
                client
                    .query(session, "ec2", region, "2016-11-15", action, &p)
                    .await
            }
        };
        let sg_name = format!("{name}-sg");
        let sg = ec2(
            "CreateSecurityGroup",
            vec![
                ("GroupName", sg_name.clone()),
                ("GroupDescription", "nodes".into()),
            ],
        )
        .await?;
        let sg_id = tag(&sg, "groupId")?;
        let (role, profile) = (format!("{name}-role"), format!("{name}-profile"));
        for (action, params) in [
            (
                "CreateRole",
                vec![
                    ("RoleName", role.as_str()),
                    ("AssumeRolePolicyDocument", "{}"),
                ],
            ),
            (
                "CreateInstanceProfile",
                vec![("InstanceProfileName", profile.as_str())],
            ),
            (
                "AddRoleToInstanceProfile",
                vec![
                    ("InstanceProfileName", profile.as_str()),
                    ("RoleName", role.as_str()),
                ],
            ),
        ] {
            client
                .query(&session, "iam", region, "2010-05-08", action, &params)
                .await?;
        }
        let mut params: Vec<(String, String)> = vec![
            ("ImageId".into(), IMAGE.into()),
            ("MinCount".into(), "1".into()),
            ("MaxCount".into(), "1".into()),
            ("InstanceType".into(), "t2.micro".into()),
            ("SecurityGroupId.1".into(), sg_id.clone()),
            ("IamInstanceProfile.Name".into(), profile.clone()),
            ("TagSpecification.1.ResourceType".into(), "instance".into()),
        ];
        for (i, (k, v)) in tags.iter().enumerate() {
            let n = i + 1;
            params.push((format!("TagSpecification.1.Tag.{n}.Key"), (*k).into()));
            params.push((format!("TagSpecification.1.Tag.{n}.Value"), (*v).into()));
        }
        let p: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let run = client
            .query(&session, "ec2", region, "2016-11-15", "RunInstances", &p)
            .await?;
        Ok(Seeded {
            instance_id: tag(&run, "instanceId")?,
            sg_id,
            sg_name,
            role,
            image: IMAGE.into(),
        })
    }
}

/// The AMI the seeded instances run (one moto knows).
pub const IMAGE: &str = "ami-12c6146b";

/// What [`Moto::seed_instance`] created.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub instance_id: String,
    pub sg_id: String,
    pub sg_name: String,
    pub role: String,
    pub image: String,
}

/// The text of the first `<name>` element of an AWS Query API answer.
fn tag(xml: &str, name: &str) -> Result<String, String> {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .ok_or_else(|| format!("no <{name}> in moto's answer"))?
        + open.len();
    let end = xml[start..]
        .find(&format!("</{name}>"))
        .ok_or_else(|| format!("unterminated <{name}> in moto's answer"))?;
    Ok(xml[start..start + end].to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tag_reads_the_first_element_and_refuses_a_missing_one() {
        let xml = "<r><instanceId>i-1</instanceId><instanceId>i-2</instanceId></r>";
        assert_eq!(super::tag(xml, "instanceId").as_deref(), Ok("i-1"));
        assert!(super::tag(xml, "groupId").is_err());
        assert!(super::tag("<groupId>x", "groupId").is_err());
    }
}

//! PD's health as its members see it: every configured endpoint is asked for `/members` with the
//! follower-handle header (each member answers from its own state, also while PD has no
//! leader), and one answering member for `/health`. [`Survey::health`] folds the answers into
//! one [`PdHealth`]: the leader most members report, the members that disagree, and the
//! unhealthy ones.

use std::collections::BTreeMap;

use super::{PdClient, PdError};
use crate::domain::{Member, MemberHealth, Members, PdHealth};

/// What every configured member answered.
#[derive(Debug)]
pub struct Survey {
    /// `(endpoint, its /members)` in configuration order.
    pub members: Vec<(String, Result<Members, PdError>)>,
    /// `/health` from the first answering member, or why none gave it.
    pub health: Result<Vec<MemberHealth>, String>,
}

impl PdClient {
    /// Asks every configured member for `/members` (concurrently), then `/health` from the
    /// members that answered, in order, until one gives it.
    pub async fn survey(&self) -> Survey {
        let asks = self.endpoints().iter().map(|ep| async move {
            let r = self.members_at(ep).await;
            (ep.clone(), r)
        });
        let members: Vec<(String, Result<Members, PdError>)> =
            futures_util::future::join_all(asks).await;
        let mut health = Err("no PD member answered /members".to_owned());
        for (ep, _) in members.iter().filter(|(_, r)| r.is_ok()) {
            match self.health_at(ep).await {
                Ok(h) => {
                    health = Ok(h);
                    break;
                }
                Err(e) => health = Err(e.to_string()),
            }
        }
        Survey { members, health }
    }
}

/// The member most answers name (ties: the one with the smallest id), and the others named.
fn majority<'a>(named: impl Iterator<Item = &'a Member>) -> (Option<Member>, Vec<String>) {
    let mut votes: BTreeMap<u64, (usize, &Member)> = BTreeMap::new();
    for m in named {
        votes.entry(m.member_id).or_insert((0, m)).0 += 1;
    }
    let best = votes
        .iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.0.cmp(a.0)))
        .map(|(id, (_, m))| (*id, (*m).clone()));
    let others = votes
        .iter()
        .filter(|(id, _)| best.as_ref().is_none_or(|(b, _)| b != *id))
        .map(|(_, (_, m))| m.name.clone())
        .collect();
    (best.map(|(_, m)| m), others)
}

impl Survey {
    /// PD's health, or why nothing is known (no member answered).
    pub fn health(&self) -> Result<PdHealth, String> {
        let answers: Vec<&Members> = self
            .members
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect();
        if answers.is_empty() {
            let why: Vec<String> = self
                .members
                .iter()
                .filter_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
                .collect();
            return Err(format!(
                "no PD member answered /members: {}",
                why.join("; ")
            ));
        }
        let (leader, other_leaders) = majority(answers.iter().filter_map(|m| m.leader.as_ref()));
        let (etcd_leader, _) = majority(answers.iter().filter_map(|m| m.etcd_leader.as_ref()));
        let health = self.health.as_ref().ok();
        Ok(PdHealth {
            leader,
            etcd_leader,
            other_leaders,
            members: answers
                .iter()
                .map(|m| m.members.len())
                .chain(health.map(Vec::len))
                .max()
                .unwrap_or(0),
            answered: answers.len(),
            asked: self.members.len(),
            unhealthy: health.map(|h| {
                h.iter()
                    .filter(|m| !m.health)
                    .map(|m| m.name.clone())
                    .collect()
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::pd::EndpointFailure;

    fn member(name: &str, id: u64) -> Member {
        Member {
            name: name.into(),
            member_id: id,
            client_urls: vec![],
        }
    }

    fn view(leader: Option<(&str, u64)>, etcd: Option<(&str, u64)>) -> Result<Members, PdError> {
        Ok(Members {
            members: vec![member("a", 1), member("b", 2), member("c", 3)],
            leader: leader.map(|(n, i)| member(n, i)),
            etcd_leader: etcd.map(|(n, i)| member(n, i)),
        })
    }

    fn down(ep: &str) -> Result<Members, PdError> {
        Err(PdError::Member {
            path: "/pd/api/v1/members".into(),
            failure: EndpointFailure {
                endpoint: ep.into(),
                status: None,
                message: "connection refused".into(),
            },
        })
    }

    fn health(unhealthy: &[&str]) -> Result<Vec<MemberHealth>, String> {
        Ok(["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, n)| MemberHealth {
                name: (*n).into(),
                member_id: i as u64 + 1,
                health: !unhealthy.contains(n),
            })
            .collect())
    }

    fn survey(
        members: Vec<Result<Members, PdError>>,
        h: Result<Vec<MemberHealth>, String>,
    ) -> Survey {
        Survey {
            members: members
                .into_iter()
                .enumerate()
                .map(|(i, r)| (format!("http://pd-{i}:2379"), r))
                .collect(),
            health: h,
        }
    }

    #[test]
    fn the_majority_leader_wins_and_disagreement_is_kept() {
        let s = survey(
            vec![
                view(Some(("b", 2)), Some(("b", 2))),
                view(Some(("b", 2)), Some(("b", 2))),
                view(Some(("c", 3)), Some(("c", 3))),
            ],
            health(&[]),
        );
        let h = s.health().unwrap();
        assert_eq!(h.leader.unwrap().name, "b");
        assert_eq!(h.other_leaders, ["c"]);
        assert_eq!((h.answered, h.asked, h.members), (3, 3, 3));
        assert_eq!(h.unhealthy, Some(vec![]));
    }

    #[test]
    fn leaderless_members_still_answer_and_unreachable_ones_do_not_count() {
        let s = survey(
            vec![
                view(None, Some(("a", 1))),
                down("http://pd-1:2379"),
                view(None, None),
            ],
            health(&["b"]),
        );
        let h = s.health().unwrap();
        assert!(h.leader.is_none() && h.other_leaders.is_empty());
        assert_eq!(h.etcd_leader.unwrap().name, "a");
        assert_eq!((h.answered, h.asked), (2, 3));
        assert_eq!(h.unhealthy, Some(vec!["b".to_owned()]));
        let s = survey(vec![down("x"), down("y")], Err("no".into()));
        let e = s.health().unwrap_err();
        assert!(
            e.contains("no PD member answered") && e.contains("connection refused"),
            "{e}"
        );
        let s = survey(
            vec![view(Some(("a", 1)), Some(("a", 1)))],
            Err("timeout".into()),
        );
        assert_eq!(s.health().unwrap().unhealthy, None);
    }
}

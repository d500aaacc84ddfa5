//! The routes of one virtual host, old against new. Istio tries them in order and the first match
//! wins, so besides added, removed and changed routes, a route whose place among the others
//! changed is reported: requests both match now go elsewhere.

use std::collections::HashMap;

use super::{fields, view, Change, Kind, Section};
use crate::render::describe_match;
use crate::table::{Route, RouteAction, RouteTable, VirtualHost};

/// At most this many of the routes a moved route crossed are named.
const CROSSINGS_SHOWN: usize = 3;

/// One side of the comparison: a virtual host in its table.
pub(super) struct Side<'a> {
    /// The table, to resolve index references.
    pub table: &'a RouteTable,
    /// The virtual host; `None` when this side does not have it.
    pub host: Option<&'a VirtualHost>,
}

impl Side<'_> {
    fn routes(&self) -> &[Route] {
        self.host.map_or(&[], |vh| &vh.routes)
    }
}

/// The route changes of the virtual host `vhost` of route table `rc`, in the order of the new
/// table (removed routes first).
pub(super) fn compare(rc: &str, vhost: &str, old: &Side<'_>, new: &Side<'_>, out: &mut Vec<Change>) {
    let (old_ids, new_ids) = (identities(old.routes()), identities(new.routes()));
    let old_at: HashMap<&str, usize> = old_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let new_at: HashMap<&str, usize> = new_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let change = |kind, r: &Route, details| Change {
        section: Section::Route,
        kind,
        subject: format!("route {rc} {vhost}: {}", label(r)),
        details,
    };
    for (i, r) in old.routes().iter().enumerate().filter(|(i, _)| !new_at.contains_key(old_ids[*i].as_str())) {
        out.push(change(Kind::Removed, r, summary(i, r)));
    }
    let mut moved = moved(new.routes(), &old_ids, &new_at);
    for (i, r) in new.routes().iter().enumerate() {
        let Some(&was) = old_at.get(new_ids[i].as_str()) else {
            out.push(change(Kind::Added, r, summary(i, r)));
            continue;
        };
        if let Some(details) = moved.remove(&i) {
            out.push(change(Kind::Reordered, r, details));
        }
        let details = fields::differences(&view::route(old.table, &old.routes()[was]), &view::route(new.table, r));
        if !details.is_empty() {
            out.push(change(Kind::Changed, r, details));
        }
    }
}

/// Each route's identity in its virtual host, one that survives rules being inserted, removed or
/// moved around it: its VirtualService and name, or its match when it has no name (or shares its
/// name with another route of the same VirtualService, as the matches of one named rule do); a
/// count tells apart routes still alike.
fn identities(routes: &[Route]) -> Vec<String> {
    let mut names: HashMap<(&str, &str), usize> = HashMap::new();
    routes.iter().for_each(|r| *names.entry((&r.virtual_service, &r.name)).or_default() += 1);
    let mut seen: HashMap<String, usize> = HashMap::new();
    routes
        .iter()
        .map(|r| {
            let mut id = format!("{} {:?}", r.virtual_service, r.name);
            if r.name.is_empty() || names.get(&(r.virtual_service.as_str(), r.name.as_str())).is_some_and(|n| *n > 1) {
                id = format!("{id} {}", view::value(&r.matcher));
            }
            let n = seen.entry(id.clone()).or_default();
            *n += 1;
            if *n == 1 {
                id
            } else {
                format!("{id} #{n}")
            }
        })
        .collect()
}

/// The routes found in both tables that no longer keep their relative order, by new position,
/// with what to say about each: its old and new position and the routes it crossed. The routes
/// that stay are a longest run in the same relative order, so one route moved is one report.
fn moved(new: &[Route], old_ids: &[String], new_at: &HashMap<&str, usize>) -> HashMap<usize, Vec<String>> {
    // (old position, new position) of every route in both, in old order.
    let common: Vec<(usize, usize)> =
        old_ids.iter().enumerate().filter_map(|(o, id)| Some((o, *new_at.get(id.as_str())?))).collect();
    let kept = longest_increasing(&common.iter().map(|(_, n)| *n).collect::<Vec<_>>());
    let mut out = HashMap::new();
    for (&(o, n), _) in common.iter().zip(&kept).filter(|(_, kept)| !**kept) {
        let crossed: Vec<usize> = common.iter().filter(|(co, cn)| (*co < o) != (*cn < n)).map(|(_, cn)| *cn).collect();
        let mut details = vec![format!("position: {} → {}", o + 1, n + 1)];
        details.extend(
            crossed
                .iter()
                .take(CROSSINGS_SHOWN)
                .map(|cn| format!("now {} {}", if *cn > n { "before" } else { "after" }, label(&new[*cn]))),
        );
        if crossed.len() > CROSSINGS_SHOWN {
            details.push(format!("… and {} more", crossed.len() - CROSSINGS_SHOWN));
        }
        out.insert(n, details);
    }
    out
}

/// Which elements of `seq` (distinct numbers) form one longest increasing subsequence.
fn longest_increasing(seq: &[usize]) -> Vec<bool> {
    // tails[k]: the element ending the best increasing run of length k + 1 found so far.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; seq.len()];
    for (i, &v) in seq.iter().enumerate() {
        let at = tails.partition_point(|&t| seq[t] < v);
        prev[i] = at.checked_sub(1).map(|p| tails[p]);
        if at == tails.len() {
            tails.push(i);
        } else {
            tails[at] = i;
        }
    }
    let mut kept = vec![false; seq.len()];
    let mut at = tails.last().copied();
    while let Some(i) = at {
        kept[i] = true;
        at = prev[i];
    }
    kept
}

/// A route as an operator finds it in `pylon routes`: where it came from and its name, or its
/// match when it has none.
fn label(r: &Route) -> String {
    if r.name.is_empty() {
        format!("{} ({})", r.origin, describe_match(&r.matcher))
    } else {
        format!("{} {:?}", r.origin, r.name)
    }
}

/// What an added or removed route at `index` is: its position, its match when [`label`] does not
/// show it, and its action.
fn summary(index: usize, r: &Route) -> Vec<String> {
    let action = match &r.action {
        RouteAction::Forward { destinations, .. } => {
            let to: Vec<String> = destinations.iter().map(|d| format!("{} weight {}", d.name, d.weight)).collect();
            format!("forward to {}", to.join(", "))
        }
        RouteAction::Redirect(rd) => format!("redirect {}", rd.code),
        RouteAction::DirectResponse { status, .. } => format!("direct response {status}"),
    };
    let mut out = vec![format!("position: {}", index + 1)];
    out.extend((!r.name.is_empty()).then(|| format!("match: {}", describe_match(&r.matcher))));
    out.push(format!("action: {action}"));
    out
}

#[cfg(test)]
mod tests {
    use super::longest_increasing;

    #[test]
    fn the_longest_run_in_order_stays_and_the_rest_moved() {
        assert_eq!(longest_increasing(&[0, 1, 2]), [true, true, true]);
        // The last route moved to the front: only it is reported.
        assert_eq!(longest_increasing(&[1, 2, 0]), [true, true, false]);
        assert_eq!(longest_increasing(&[1, 0]), [false, true]);
        assert_eq!(longest_increasing(&[]), Vec::<bool>::new());
    }
}

//! A configuration large enough to be read and validated on several cores reports the errors its
//! resources report one at a time, word for word and in resource order.

fn virtual_service(i: usize) -> String {
    // Every seventh has a problem of its own: a duration Istio rejects, at its own path.
    let timeout = if i.is_multiple_of(7) { "1x" } else { "1s" };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs{i}, namespace: default}}\nspec:\n  hosts: [h{i}.example.com]\n  gateways: [gw]\n  http:\n  - timeout: {timeout}\n    route: [{{destination: {{host: h{i}.example.com}}}}]\n"
    )
}

#[test]
fn a_large_configuration_reports_its_problems_in_resource_order() {
    let sel = conf::Selection::default();
    let docs: Vec<String> = (0..700).map(virtual_service).collect();
    let whole = conf::build_str("all.yaml", &docs.join("---\n"), &sel);
    let problems: Vec<String> = whole.diagnostics.iter().map(|d| d.to_string()).collect();
    let expected: Vec<String> = (0..700)
        .flat_map(|i| {
            conf::build_str("all.yaml", &docs[i], &sel).diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>()
        })
        .collect();
    let bad: Vec<&String> = problems.iter().filter(|p| p.starts_with("error")).collect();
    assert_eq!(bad.len(), 100, "{problems:#?}");
    assert!(bad.iter().enumerate().all(|(n, p)| p.contains(&format!("default/vs{} ", n * 7))), "{bad:#?}");
    // Each alone reports the same error, word for word.
    let alone: Vec<&String> = expected.iter().filter(|p| p.starts_with("error")).collect();
    assert_eq!(bad, alone);
}

//! The dashboard's table and plot: hidden OOD columns marked, names as wide
//! as the terminal allows, the class count said once, histograms without colour.

use crate::tui::{app_with_info, ch, draw, finished_app, key, press, snap};
use crossterm::event::KeyCode;

#[test]
fn hidden_ood_columns_are_marked_and_names_use_the_width() {
    // 80 columns hold one OOD set and the average: scenes is off the right.
    let mut app = finished_app();
    press(&mut app, &[ch('2')]);
    let narrow = draw(&mut app, 80, 24);
    assert!(narrow.contains("+1 set → (←→)"), "{narrow}");
    let wide = draw(&mut app, 120, 40);
    assert!(!wide.contains("set →"), "{wide}");
    press(&mut app, &[key(KeyCode::Right)]);
    let narrow = draw(&mut app, 80, 24);
    assert!(narrow.contains("← +1 set"), "{narrow}");
    // Long names whole at 200 columns, cut with an ellipsis at 80.
    let long = [
        "imagenet-val-2012-full",
        "describable-textures",
        "sun-scenes-places",
    ];
    let mut app = app_with_info(|info| {
        for (d, name) in info.datasets.iter_mut().zip(long) {
            d.name = name.to_string();
        }
    });
    press(&mut app, &[ch('2')]);
    let wide = draw(&mut app, 200, 60);
    for name in long {
        assert!(
            wide.contains(&format!("OOD {name}")) || wide.contains(&format!("ID  {name}")),
            "{name}\n{wide}"
        );
    }
    press(&mut app, &[ch('4')]);
    let wide = draw(&mut app, 200, 60);
    assert!(
        wide.contains("imagenet-val-2012-full images/ILSVRC"),
        "{wide}"
    );
    let narrow = draw(&mut app, 80, 24);
    assert!(narrow.contains('…'), "{narrow}");
    snap("browser_long_names", &mut app);
}

#[test]
fn the_run_panel_says_the_class_count_once() {
    let mut app = app_with_info(|info| {
        info.model.name = "EfficientNet-Lite0, 1000 classes".into();
        info.model.num_classes = 1000;
    });
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 120, 40);
    assert_eq!(screen.matches("1000 classes").count(), 1, "{screen}");
    assert_eq!(screen.matches("1,000 classes").count(), 0, "{screen}");
    // A name without the count gets it.
    let mut app = app_with_info(|info| info.model.name = "tiny".into());
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("tiny, 10 classes"), "{screen}");
}

#[test]
fn histograms_read_without_colour() {
    let mut app = finished_app();
    app.set_no_color(true);
    press(&mut app, &[ch('2')]);
    let screen = draw(&mut app, 120, 40);
    for legend in ["█ ID ▒ OOD ▓ both", "█ ID imagenet-val", "▒ OOD textures"] {
        assert!(screen.contains(legend), "{legend}\n{screen}");
    }
    // Both fills and their overlap are drawn in the plot.
    let plot: String = screen.lines().skip(8).take(20).collect();
    for g in ['▒', '▓'] {
        assert!(plot.contains(g), "{g}\n{screen}");
    }
    snap("dashboard_monochrome", &mut app);
    press(&mut app, &[ch('3')]);
    snap("anatomy_monochrome", &mut app);
}

#[test]
fn the_anatomy_says_which_gradnorms_its_factors_are_not() {
    // No note with the paper's GradNorm alone.
    let mut app = finished_app();
    press(&mut app, &[ch('3')]);
    assert!(!draw(&mut app, 120, 40).contains("ablated"));
    // Its GradNorm made an L2 one: no GradNorm the factors multiply to.
    let mut app = app_with_info(|info| {
        info.methods[3] = gradnorm_core::method::Method::parse_spec("gradnorm:norm=l2", &[])
            .unwrap()
            .remove(0);
    });
    press(&mut app, &[ch('3')]);
    for (w, h) in [(120, 40), (80, 24)] {
        let text = draw(&mut app, w, h);
        assert!(
            text.contains("the paper's GradNorm only; 1 ablated: no such product"),
            "{text}"
        );
        assert!(text.contains("GradNorm AUROC -%"), "{text}");
    }
}

/// Issue 29 item 10: after a run the message shows beside the key hints,
/// not in their place: `?` and `q` stay at every width.
#[test]
fn a_message_leaves_the_key_hints_in_the_footer() {
    let mut app = finished_app();
    let (said, _) = app.message().cloned().expect("the run's end is said");
    assert!(said.starts_with("finished: 260 images"), "{said}");
    for (w, h) in [(120, 40), (80, 24)] {
        let screen = draw(&mut app, w, h);
        let footer = screen.lines().last().unwrap();
        assert!(footer.contains("finished: 260 images"), "{footer}");
        assert!(
            footer.contains(" ?  help ") && footer.contains(" q  quit "),
            "{footer}"
        );
    }
    // A long message is cut to leave them room.
    app.say("x".repeat(300), gradnorm_tui::tui::Level::Warn);
    let screen = draw(&mut app, 80, 24);
    let footer = screen.lines().last().unwrap();
    assert!(
        footer.contains("…") && footer.contains(" ?  help "),
        "{footer}"
    );
}

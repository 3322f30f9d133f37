import ArgumentParser
import Foundation
import Training

/// `finetune --teacher`: knowledge distillation from a classifier or a zero-shot CLAP.
struct DistillationArguments: ParsableArguments {
    @Option(help: "Distil from this teacher: a classifier Earshot loads (a run, a Hugging Face folder, a .pth) whose classes include the run's by name, or with --teacher-clap a CLAP. Its scores on each training clip, computed once before training, join the labels as soft targets.")
    var teacher: String?
    @Flag(name: .customLong("teacher-clap"), help: "The teacher is a CLAP (a Hugging Face ClapModel folder, a LAION .pt, an Earshot contrastive run), scored zero-shot on the class names.")
    var teacherCLAP = false
    @Option(name: .customLong("teacher-prompt"), help: "--teacher-clap: a prompt template with {} or {label}; repeat for an ensemble (default LAION's).")
    var teacherPrompt: [String] = []
    @Option(name: .customLong("teacher-tokenizer"), help: "--teacher-clap: the CLAP's tokenizer folder, as for zeroshot.") var teacherTokenizer: String?
    @Option(name: .customLong("teacher-classes"), help: "A CSV with columns class and teacher_class naming the teacher's class for each run class it does not share by name (several separated by ;, summed).")
    var teacherClasses: String?
    @Option(name: .customLong("kd-weight"), help: "Distillation weight α: the loss is (1 − α) · the labels' loss + α · T² · KL(teacher ‖ student) at temperature T.")
    var kdWeight: Float = 0.5
    @Option(name: .customLong("kd-temperature"), help: "Distillation temperature T (both sides' logits divided by it).") var kdTemperature: Float = 2

    func config() throws -> DistillationConfig? {
        guard let teacher else {
            if teacherCLAP || !teacherPrompt.isEmpty || teacherTokenizer != nil || teacherClasses != nil {
                throw ValidationError("--teacher-clap, --teacher-prompt, --teacher-tokenizer and --teacher-classes need --teacher")
            }
            return nil
        }
        var c = DistillationConfig(teacher: teacher)
        (c.weight, c.temperature, c.clap, c.templates, c.tokenizer) = (kdWeight, kdTemperature, teacherCLAP, teacherPrompt, teacherTokenizer)
        // The map is kept in the run's config (a resume needs no file).
        if let teacherClasses { c.classMap = try DistillationConfig.classMap(csv: URL(fileURLWithPath: teacherClasses)) }
        do { try c.validate() } catch { throw ValidationError("\(error)") }
        return c
    }
}
